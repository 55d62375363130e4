import { pino, type Logger } from "pino";

export type { Logger };

/** Structured JSON logs on stdout, one logger per process, named after the service. */
export function createLogger(service: string): Logger {
  return pino({
    name: service,
    level: process.env.LOG_LEVEL ?? "info",
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
