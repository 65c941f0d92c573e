import pino from 'pino';

export type Logger = pino.Logger;

/** kata's level names (both generations) mapped onto pino's. */
const levelNames: Record<string, pino.Level> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  critical: 'fatal',
  fatal: 'fatal',
  panic: 'fatal',
};

export function parseLogLevel(name: string): pino.Level | undefined {
  return levelNames[name.trim().toLowerCase()];
}

/**
 * JSON lines on stderr, one per event. Synchronous writes: the agent may be PID 1 and power the VM
 * off right after logging, and an async buffer would lose those last lines.
 */
export function createLogger(level: pino.Level, name = 'kata-agent', destination: pino.DestinationStream = pino.destination({ fd: 2, sync: true })): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
