import http2 from "node:http2";
import type { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "@recsys/logging";
import type { Sample } from "@recsys/metrics";
import { serveMetrics, serveMetricsJson, type HttpRequest, type HttpResponse } from "@recsys/server";
import { callerOf, type Access } from "./access.js";
import { DASHBOARD_PAGE } from "./dashboard-page.js";
import { z } from "zod";
import { BACKENDS, DashboardState, type BackendName, type BackendScrape, type DashboardAnalytics } from "./dashboard-snapshot.js";

// JSON has no NaN: such a value arrives as null and is left out.
const SAMPLES = z
  .array(z.object({ name: z.string(), labels: z.record(z.string(), z.string()), value: z.number().nullable() }))
  .transform((samples) => samples.filter((s): s is Sample => s.value !== null));

/** Open event streams at once; each costs a connection, the scrapes are shared. */
export const MAX_DASHBOARD_STREAMS = 100;
/** Open event streams at once per client (a key, or an address on an open gateway), so that one cannot hold them all. */
export const MAX_DASHBOARD_STREAMS_PER_CLIENT = 10;

export interface DashboardOptions {
  /** Base URL of each backend's port (its /healthz and /metrics.json). */
  backends: Record<BackendName, string>;
  access: Access;
  logger: Logger;
  intervalMs?: number;
  scrapeTimeoutMs?: number;
  /** The event mix and trending urls, from analytics; rejects when it cannot answer. */
  analytics?: () => Promise<DashboardAnalytics>;
}

export interface Dashboard {
  /** For `startRpcServer({ http })`: GET / (the page) and GET /dashboard/events (its snapshots). */
  http: (req: HttpRequest, res: HttpResponse) => boolean;
  /** Ends every open event stream and stops scraping. */
  close(): void;
}

/**
 * The live dashboard: a page, and one snapshot a second as server-sent events. The backends are
 * scraped once per interval for every open page together, and only while a page is open.
 */
export function createDashboard(opts: DashboardOptions): Dashboard {
  const feed = new SnapshotFeed(opts);
  const streams = new Set<HttpResponse>();
  /** Open streams by client; a client is left out when it has none. */
  const byClient = new Map<string, number>();

  async function openStream(req: HttpRequest, res: HttpResponse) {
    let client: string;
    try {
      client = await opts.access.checkDashboard(callerOf({ get: (name) => headerOf(req, name) }));
    } catch (err) {
      return sendRefusal(res, err);
    }
    const refuse = (code: Code, message: string) => {
      opts.logger.warn({ open: streams.size }, `refused: ${message}`);
      sendRefusal(res, new ConnectError(message, code), { "retry-after": "10" });
    };
    if (streams.size >= MAX_DASHBOARD_STREAMS) return refuse(Code.Unavailable, `at most ${MAX_DASHBOARD_STREAMS} dashboards at once`);
    const own = byClient.get(client) ?? 0;
    if (own >= MAX_DASHBOARD_STREAMS_PER_CLIENT) {
      return refuse(Code.ResourceExhausted, `at most ${MAX_DASHBOARD_STREAMS_PER_CLIENT} dashboards at once per client`);
    }
    // Closed while its credentials were checked (a Redis round trip): its 'close' has been and gone, so it would hold its places.
    if (res instanceof http2.Http2ServerResponse ? res.stream.destroyed : res.destroyed) return;
    byClient.set(client, own + 1);
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" });
    // Both kinds of response (HTTP/1.1 and HTTP/2) are writable streams.
    const body = res as Writable;
    body.write("retry: 2000\n\n");
    streams.add(res);
    // A page that cannot keep up skips snapshots instead of piling them up in memory.
    let draining = false;
    const unsubscribe = feed.subscribe((json) => {
      if (draining) return;
      if (!body.write(`data: ${json}\n\n`)) {
        draining = true;
        body.once("drain", () => (draining = false));
      }
    });
    body.once("close", () => {
      streams.delete(res);
      const left = (byClient.get(client) ?? 1) - 1;
      if (left > 0) byClient.set(client, left);
      else byClient.delete(client);
      unsubscribe();
    });
  }

  return {
    http(req, res) {
      if (req.method !== "GET") return false;
      const path = (req.url ?? "").split("?")[0];
      if (path === "/" || path === "/dashboard") {
        res.writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "content-security-policy": DASHBOARD_PAGE.contentSecurityPolicy,
          "x-content-type-options": "nosniff",
          "referrer-policy": "no-referrer",
          "cache-control": "no-cache",
        });
        res.end(DASHBOARD_PAGE.html);
        return true;
      }
      if (path === "/dashboard/events") {
        openStream(req, res).catch((err: unknown) => {
          opts.logger.warn({ err }, "dashboard stream failed");
          res.destroy();
        });
        return true;
      }
      return false;
    },
    close() {
      feed.close();
      for (const res of streams) res.end();
    },
  };
}

/** A refusal as Connect's JSON error body, with its HTTP status. */
function sendRefusal(res: HttpResponse, err: unknown, headers: Record<string, string> = {}) {
  const e = ConnectError.from(err);
  res.writeHead(codeToHttpStatus(e.code), { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ code: codeToString(e.code), message: e.rawMessage }));
}

/** GET /metrics and /metrics.json only with what the dashboard's data needs (a read key); for `startRpcServer({ http })`. */
export function guardMetrics(access: Access) {
  return (req: HttpRequest, res: HttpResponse): boolean => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "GET" || (path !== "/metrics" && path !== "/metrics.json")) return false;
    access.checkDashboard(callerOf({ get: (name) => headerOf(req, name) })).then(
      () => (path === "/metrics" ? serveMetrics(res) : serveMetricsJson(res)),
      (err: unknown) => sendRefusal(res, err),
    );
    return true;
  };
}

function headerOf(req: HttpRequest, name: string): string | null {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : (value ?? null);
}

/** Scrapes every backend each interval while anyone listens, and hands each snapshot, as JSON, to every listener. */
class SnapshotFeed {
  private readonly listeners = new Set<(json: string) => void>();
  private readonly state = new DashboardState();
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly failing = new Set<BackendName>();
  private timer: NodeJS.Timeout | undefined;
  private scraping = false;
  private closed = false;
  private latest: { json: string; atMs: number } | undefined;

  constructor(private readonly opts: DashboardOptions) {
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.timeoutMs = opts.scrapeTimeoutMs ?? 1_500;
  }

  subscribe(listener: (json: string) => void): () => void {
    this.listeners.add(listener);
    // A new page sees numbers at once when a recent snapshot exists.
    if (this.latest && Date.now() - this.latest.atMs < 2 * this.intervalMs) listener(this.latest.json);
    if (!this.timer && !this.scraping && !this.closed) this.schedule(0);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.listeners.clear();
  }

  private schedule(delayMs: number) {
    this.timer = setTimeout(() => void this.tick(), delayMs);
  }

  private async tick() {
    this.timer = undefined;
    this.scraping = true;
    const started = Date.now();
    try {
      const [scrapes, analytics] = await Promise.all([
        Promise.all(BACKENDS.map((service) => this.scrape(service))),
        this.opts.analytics?.().catch(() => null) ?? null,
      ]);
      const atMs = Date.now();
      this.latest = { json: JSON.stringify(this.state.next(scrapes, atMs, analytics)), atMs };
      for (const listener of this.listeners) listener(this.latest.json);
    } catch (err) {
      this.opts.logger.warn({ err }, "dashboard snapshot failed");
    } finally {
      this.scraping = false;
    }
    if (this.listeners.size > 0 && !this.closed) this.schedule(Math.max(0, this.intervalMs - (Date.now() - started)));
  }

  private async scrape(service: BackendName): Promise<BackendScrape> {
    const get = (path: string) => fetch(new URL(path, this.opts.backends[service]), { signal: AbortSignal.timeout(this.timeoutMs) });
    const healthy = async () => {
      try {
        const res = await get("/healthz");
        await res.arrayBuffer();
        return res.ok;
      } catch {
        return false;
      }
    };
    const metrics = async () => {
      try {
        const res = await get("/metrics.json");
        if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
        const samples = SAMPLES.parse(await res.json());
        if (this.failing.delete(service)) this.opts.logger.info({ service }, "dashboard: metrics readable again");
        return samples;
      } catch (err) {
        if (!this.failing.has(service)) this.opts.logger.warn({ service, err: String(err) }, "dashboard: metrics not readable");
        this.failing.add(service);
        return undefined;
      }
    };
    const [isHealthy, samples] = await Promise.all([healthy(), metrics()]);
    return { service, healthy: isHealthy, metrics: samples };
  }
}
