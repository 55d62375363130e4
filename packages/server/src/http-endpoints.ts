import type http from "node:http";
import type http2 from "node:http2";
import { metricSamples, registry } from "@recsys/metrics";
import type { Healthy } from "./grpc-health.js";

export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;

/** GET /metrics: the process's metrics in Prometheus' text format. */
export function serveMetrics(res: HttpResponse): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(text);
    },
    (err: unknown) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err));
    },
  );
}

/** GET /metrics.json: the same series as samples, for readers that are not Prometheus (the dashboard). */
export function serveMetricsJson(res: HttpResponse): void {
  metricSamples().then(
    (samples) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(samples));
    },
    (err: unknown) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err));
    },
  );
}

/** GET /healthz: 200 and SERVING while `healthy()` holds, else 503 and NOT_SERVING; `problems()` listed when any. */
export function serveHealthz(res: HttpResponse, service: string, healthy: Healthy, problems?: () => string[]): void {
  void Promise.resolve(healthy()).then(
    (ok) => {
      const listed = problems?.() ?? [];
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: ok ? "SERVING" : "NOT_SERVING", service, ...(listed.length ? { problems: listed } : {}) }));
    },
    () => {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "NOT_SERVING", service }));
    },
  );
}
