import { pino, type Logger } from "pino";
import { initTracing, traceFields } from "@recsys/tracing";

export type { Logger };

/**
 * Structured JSON logs on stdout, one logger per process, named after the service; sets up the process's trace context too,
 * so a line logged while an RPC or a consumed message is handled carries its trace_id and span_id.
 */
export function createLogger(service: string): Logger {
  initTracing(service);
  return pino({
    name: service,
    level: process.env.LOG_LEVEL ?? "info",
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: traceFields,
  });
}
