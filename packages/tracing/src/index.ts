import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { ConsoleSpanExporter, SimpleSpanProcessor, TracerProvider, type SpanProcessor } from "@opentelemetry/sdk-trace";

export { context, trace };

let tracerName = "recsys";

/**
 * W3C trace context for this process: an incoming `traceparent` continues its trace, and every RPC and consumed message is a span.
 * Spans are exported only when asked (OTEL_TRACES_EXPORTER=console); the trace and span ids are in every log line either way.
 */
export function initTracing(service: string, env: NodeJS.ProcessEnv = process.env): void {
  tracerName = service;
  const spanProcessors: SpanProcessor[] = env.OTEL_TRACES_EXPORTER === "console" ? [new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() })] : [];
  trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

/** The active trace and span ids, for log lines (pino's mixin). */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

const headersGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};
const headersSetter: TextMapSetter<Headers> = { set: (h, key, value) => h.set(key, value) };

/** Server side: continues the caller's trace in a span per RPC, and answers the trace id as x-request-id. */
export const serverTracing: Interceptor = (next) => async (req) => {
  const parent = propagation.extract(context.active(), req.header, headersGetter);
  const span = trace.getTracer(tracerName).startSpan(`${req.service.typeName}/${req.method.name}`, { kind: SpanKind.SERVER }, parent);
  try {
    const res = await context.with(trace.setSpan(parent, span), () => next(req));
    res.header.set("x-request-id", span.spanContext().traceId);
    return res;
  } catch (err) {
    const ce = ConnectError.from(err);
    ce.metadata.set("x-request-id", span.spanContext().traceId);
    if (ce.code !== Code.InvalidArgument && ce.code !== Code.NotFound) span.setStatus({ code: SpanStatusCode.ERROR, message: ce.rawMessage });
    throw ce;
  } finally {
    span.end();
  }
};

/** Client side: sends the active trace with every outgoing RPC. */
export const clientTracing: Interceptor = (next) => async (req) => {
  propagation.inject(context.active(), req.header, headersSetter);
  return next(req);
};

/** Something that carries string headers, as NATS message headers do. */
export interface HeaderCarrier {
  get(key: string): string;
  set(key: string, value: string): void;
  keys(): string[];
}

/** Puts the active trace into message headers before a publish. */
export function injectInto(h: HeaderCarrier): void {
  propagation.inject(context.active(), h, { set: (c, k, v) => c.set(k, v) });
}

/** The trace a consumed message carries, if any. */
function extractFrom(h: HeaderCarrier | undefined): Context {
  return h ? propagation.extract(context.active(), h, { keys: (c) => c.keys(), get: (c, k) => c.get(k) || undefined }) : context.active();
}

/**
 * Runs `fn` in one span for consumed messages: one continues its trace, several start a trace that links theirs (batch receive).
 * `traceIds` are the messages' own trace ids, in order ("" for none), so a log line about one message can name the trace it came with.
 */
export async function withBatchSpan<T>(name: string, carriers: Array<HeaderCarrier | undefined>, fn: (traceIds: string[]) => Promise<T>): Promise<T> {
  const parents = carriers.map(extractFrom);
  const linked = parents.map((p) => trace.getSpanContext(p));
  const traceIds = linked.map((sc) => sc?.traceId ?? "");
  const parent = parents.length === 1 ? parents[0]! : context.active();
  const links = parents.length === 1 ? [] : linked.filter((sc) => sc !== undefined).map((sc) => ({ context: sc }));
  const span = trace
    .getTracer(tracerName)
    .startSpan(name, { kind: SpanKind.CONSUMER, links, attributes: { "messaging.batch.message_count": carriers.length } }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(traceIds));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    throw err;
  } finally {
    span.end();
  }
}
