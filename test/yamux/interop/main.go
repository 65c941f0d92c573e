// Interop peer for the yamux tests: drives our TypeScript yamux with hashicorp/yamux, the library
// kata 1.x's agent and proxy use. Built from Debian's golang-github-hashicorp-yamux-dev (GOPATH mode).
//
//	interop client SOCKET   dial SOCKET, act as the host: echo checks on many streams, pings, close
//	interop server SOCKET   listen on SOCKET, act as the agent: echo every stream the peer opens
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

func config() *yamux.Config {
	c := yamux.DefaultConfig()
	// kata 1.x turns yamux's own keep-alive off and pings from its proxy instead.
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 10 * time.Second
	c.LogOutput = os.Stderr
	return c
}

func echoCheck(s *yamux.Session, size int) error {
	st, err := s.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer st.Close()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	// Read exactly what was sent before closing: in this hashicorp version (the one kata 1.x
	// vendored) Read after our own Close returns EOF as soon as the buffer is empty, so Close is
	// not a usable half-close on this side. Our FIN must still come back after the echo.
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		werr <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(st, got); err != nil {
		return fmt.Errorf("stream %d read: %w", st.StreamID(), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("stream %d write: %w", st.StreamID(), err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("stream %d close: %w", st.StreamID(), err)
	}
	if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return fmt.Errorf("stream %d: after the echo want EOF (our FIN), got %d bytes, %v", st.StreamID(), n, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("stream %d: echoed %d bytes differ from the %d sent", st.StreamID(), len(got), len(data))
	}
	return nil
}

func client(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	s, err := yamux.Client(conn, config())
	if err != nil {
		return err
	}
	rtt, err := s.Ping()
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	fmt.Printf("ping ok %v\n", rtt > 0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- echoCheck(s, 1000+i*5000)
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- echoCheck(s, 8<<20)
	}()
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			return err
		}
		n++
	}
	fmt.Printf("echo ok %d streams\n", n)
	if _, err := s.Ping(); err != nil {
		return fmt.Errorf("ping after transfers: %w", err)
	}
	// hashicorp/yamux drops a stream from its table in its receive loop, which can run just after Read
	// has returned EOF: give that bookkeeping a bounded moment before reporting what is still open.
	for deadline := time.Now().Add(5 * time.Second); s.NumStreams() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("open streams at end %d\n", s.NumStreams())
	return s.Close()
}

func server(path string) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	l.Close()
	s, err := yamux.Server(conn, config())
	if err != nil {
		return err
	}
	n := 0
	for {
		st, err := s.AcceptStream()
		if err != nil {
			// The peer closing the session ends the accept loop: report what was served.
			fmt.Printf("served %d streams\n", n)
			return nil
		}
		n++
		go func() {
			io.Copy(st, st)
			st.Close()
		}()
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: interop client|server SOCKET")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "client":
		err = client(os.Args[2])
	case "server":
		err = server(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}
