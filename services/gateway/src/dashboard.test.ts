import http from "node:http";
import type net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "@recsys/logging";
import { COVISIT_WINDOW_IN_WORDS } from "@recsys/validation";
import { Counter, Gauge, Histogram, metricSamples, Registry } from "@recsys/metrics";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Access, memoryLimiters, parseApiKeys, UNLIMITED } from "./access.js";
import { Authenticator } from "./auth.js";
import { createDashboard, MAX_DASHBOARD_STREAMS, type Dashboard, type DashboardOptions } from "./dashboard.js";
import {
  BACKENDS,
  batchSizes,
  CounterRate,
  DashboardState,
  total,
  type BackendName,
  type BackendScrape,
  type DashboardSnapshot,
} from "./dashboard-snapshot.js";

const logger = createLogger("gateway").child({}, { level: "silent" });

// Registries with the series the dashboard reads, default label included, as each backend has them.
function registry(service: string, build: (registers: Registry[]) => void): Registry {
  const r = new Registry();
  r.setDefaultLabels({ service });
  build([r]);
  return r;
}
const INGEST = registry("ingest", (registers) => {
  const published = new Counter({ name: "recsys_published_messages_total", help: "h", labelNames: ["stream"], registers });
  published.inc({ stream: "TX1_CLICKS" }, 3);
  published.inc({ stream: "TX1_CONTENT" }, 7);
  published.inc({ stream: "TX1_ENGAGEMENT" }, 2);
  new Counter({ name: "recsys_published_clicks_total", help: "h", registers }).inc(40);
  new Gauge({ name: "process_resident_memory_bytes", help: "h", registers }).set(104857600);
});
const covisit = (applied: number) =>
  registry("covisit", (registers) => {
    const clicks = new Counter({ name: "recsys_covisit_clicks_total", help: "h", labelNames: ["outcome"], registers });
    clicks.inc({ outcome: "applied" }, applied);
    clicks.inc({ outcome: "duplicate" }, 3);
    new Gauge({ name: "recsys_consumer_lag_messages", help: "h", labelNames: ["stream", "consumer"], registers }).set(
      { stream: "TX1_CLICKS", consumer: "covisit" },
      12,
    );
  });
const EMBEDDER = registry("embedder", (registers) => {
  const sizes = new Histogram({ name: "recsys_embed_batch_size", help: "h", buckets: [1, 2, 4, 8], registers });
  for (const size of [1, 1, 3, 4, 4, 6]) sizes.observe(size);
  new Gauge({ name: "recsys_consumer_lag_messages", help: "h", labelNames: ["stream", "consumer"], registers }).set(
    { stream: "TX1_CONTENT", consumer: "embedder" },
    0,
  );
});

describe("total", () => {
  it("sums the series that pass a filter, and says when there are none", async () => {
    const samples = await metricSamples(INGEST);
    expect(total(samples, "recsys_published_messages_total")).toBe(12);
    expect(total(samples, "recsys_published_messages_total", (l) => l.stream === "TX1_CLICKS")).toBe(3);
    expect(total(samples, "recsys_missing_total")).toBeUndefined();
  });
});

describe("CounterRate", () => {
  it("is per second over its window, null until it has two readings", () => {
    const rate = new CounterRate(5_000);
    expect(rate.observe(100, 0)).toBeNull();
    expect(rate.observe(110, 1_000)).toBe(10);
    expect(rate.observe(130, 2_000)).toBe(15);
    // The reading at 0 falls out of the window: 60 clicks over the last 5 s.
    expect(rate.observe(160, 6_000)).toBe(10);
  });

  it("counts on from zero after a restart, and says nothing while the counter cannot be read", () => {
    const rate = new CounterRate(5_000);
    rate.observe(500, 0);
    expect(rate.observe(10, 1_000)).toBe(10);
    expect(rate.observe(undefined, 2_000)).toBeNull();
    expect(rate.observe(30, 3_000)).toBe(10);
  });
});

describe("DashboardState", () => {
  const scrapes = async (applied: number): Promise<BackendScrape[]> => [
    { service: "ingest", healthy: true, metrics: await metricSamples(INGEST) },
    { service: "covisit", healthy: true, metrics: await metricSamples(covisit(applied)) },
    { service: "embedder", healthy: true, metrics: await metricSamples(EMBEDDER) },
    { service: "profile", healthy: false },
  ];

  it("gives clicks and their rate, lag per consumer, batch sizes and each backend's health", async () => {
    const state = new DashboardState();
    const first = state.next(await scrapes(10), 0);
    expect(first.clicks).toEqual({ applied: 10, appliedPerSecond: null, published: 40, publishedPerSecond: null });
    const second = state.next(await scrapes(30), 2_000);
    expect(second.clicks).toEqual({ applied: 30, appliedPerSecond: 10, published: 40, publishedPerSecond: 0 });
    expect(second.lag).toEqual([
      { service: "covisit", stream: "TX1_CLICKS", consumer: "covisit", messages: 12 },
      { service: "embedder", stream: "TX1_CONTENT", consumer: "embedder", messages: 0 },
    ]);
    expect(second.services).toEqual([
      { name: "ingest", healthy: true, metrics: true, residentBytes: 104857600 },
      { name: "covisit", healthy: true, metrics: true, residentBytes: null },
      { name: "embedder", healthy: true, metrics: true, residentBytes: null },
      { name: "profile", healthy: false, metrics: false, residentBytes: null },
    ]);
    expect(second.embedBatches).toEqual({
      batches: 6,
      texts: 19,
      meanSize: 19 / 6,
      buckets: [
        { label: "≤1", batches: 2 },
        { label: "2", batches: 0 },
        { label: "3–4", batches: 3 },
        { label: "5–8", batches: 1 },
        { label: ">8", batches: 0 },
      ],
    });
  });

  it("shows no numbers for a backend that did not answer, rather than zeros", async () => {
    const s = new DashboardState().next([{ service: "covisit", healthy: false }], 0);
    expect(s.clicks).toEqual({ applied: null, appliedPerSecond: null, published: null, publishedPerSecond: null });
    expect(s.embedBatches).toBeNull();
    const unused = registry("embedder", (registers) => new Histogram({ name: "recsys_embed_batch_size", help: "h", buckets: [], registers }));
    expect(batchSizes(await metricSamples(unused))).toEqual({
      batches: 0,
      texts: 0,
      meanSize: null,
      buckets: [{ label: "all", batches: 0 }],
    });
  });
});

describe("dashboard over HTTP", () => {
  const servers: http.Server[] = [];
  const backendUrls = {} as Record<BackendName, string>;
  let applied = 5;
  let profileHealthy = true;
  let gateway: http.Server | undefined;
  let dashboard: Dashboard | undefined;

  const listen = async (server: http.Server) => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  };

  beforeAll(async () => {
    for (const service of BACKENDS) {
      const backend = http.createServer((req, res) => {
        if (req.url === "/healthz") {
          const ok = service !== "profile" || profileHealthy;
          res.writeHead(ok ? 200 : 503).end();
          return;
        }
        if (req.url === "/metrics.json") {
          const from = { ingest: INGEST, covisit: covisit(applied), embedder: EMBEDDER, profile: undefined }[service];
          if (from === undefined) res.writeHead(500).end("registry failed");
          else void metricSamples(from).then((samples) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(samples)));
          return;
        }
        res.writeHead(404).end();
      });
      servers.push(backend);
      backendUrls[service] = await listen(backend);
    }
  });
  afterEach(async () => {
    dashboard?.close();
    const open = gateway;
    gateway = dashboard = undefined;
    if (open) await new Promise((r) => (open.close(r), open.closeAllConnections()));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => (s.close(r), s.closeAllConnections()))));
  });

  async function serve(apiKeys = "", analytics?: DashboardOptions["analytics"], access?: Access) {
    const d = createDashboard({
      backends: backendUrls,
      access: access ?? new Access(new Authenticator(parseApiKeys(apiKeys)), UNLIMITED, memoryLimiters(UNLIMITED), logger),
      logger,
      intervalMs: 100,
      analytics,
    });
    dashboard = d;
    gateway = http.createServer((req, res) => {
      if (!d.http(req, res)) res.writeHead(404).end();
    });
    return listen(gateway);
  }

  /** The first `n` snapshots of an event stream. */
  async function snapshots(url: string, n: number, headers: Record<string, string> = {}): Promise<DashboardSnapshot[]> {
    const res = await fetch(`${url}/dashboard/events`, { headers });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const out: DashboardSnapshot[] = [];
    let buffer = "";
    while (out.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .filter((l) => l.startsWith("data: "));
        buffer = buffer.slice(end + 2);
        if (data.length > 0) out.push(JSON.parse(data.map((l) => l.slice(6)).join("\n")) as DashboardSnapshot);
      }
    }
    await reader.cancel();
    return out.slice(0, n);
  }

  it("serves the page with a policy that allows only its own script and style", async () => {
    const url = await serve();
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    const html = await res.text();
    expect(html).toContain('id="recommendation-form"');
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)="https?:/);
    expect(html).not.toContain("innerHTML");
    // The page states the window covisit counts with, not a copy of it.
    expect(html).toContain(`const COVISIT_WINDOW = "${COVISIT_WINDOW_IN_WORDS}"`);
    expect(html).not.toContain("{{");
    expect((await fetch(`${url}/graphql`)).status).toBe(404);
  });

  it("streams a snapshot of every backend each interval", async () => {
    const url = await serve();
    profileHealthy = false;
    const [first, , third] = await snapshots(url, 3).finally(() => (profileHealthy = true));
    expect(first!.services.map((s) => [s.name, s.healthy, s.metrics])).toEqual([
      ["ingest", true, true],
      ["covisit", true, true],
      ["embedder", true, true],
      ["profile", false, false],
    ]);
    expect(third!.clicks.published).toBe(40);
    expect(third!.lag.map((l) => l.consumer)).toEqual(["covisit", "embedder"]);
    expect(third!.embedBatches?.meanSize).toBeCloseTo(19 / 6);
    expect(third!.analytics).toBeNull();
  });

  it("shows analytics' event mix and trending pages, and nothing of them while analytics fails", async () => {
    let up = true;
    const reading = {
      from: "2024-05-01T08:00:00.000Z",
      to: "2024-05-01T09:00:00.000Z",
      events: [{ event: "view", clicks: 7 }],
      trending: [{ url: "https://e.org/a", clicks: 5 }],
    };
    const url = await serve("", async () => {
      if (!up) throw new Error("analytics down");
      return reading;
    });
    expect((await snapshots(url, 1))[0]!.analytics).toEqual(reading);
    up = false;
    expect((await snapshots(url, 2))[1]!.analytics).toBeNull();
  });

  it("shows the applied clicks climbing while the page is open", async () => {
    const url = await serve();
    applied = 100;
    const timer = setInterval(() => (applied += 10), 50);
    try {
      const seen = await snapshots(url, 5);
      const values = seen.map((s) => s.clicks.applied!);
      expect(values[values.length - 1]!).toBeGreaterThan(values[0]!);
      expect(seen[seen.length - 1]!.clicks.appliedPerSecond).toBeGreaterThan(0);
    } finally {
      clearInterval(timer);
    }
  });

  it("lets one key hold at most 10 streams at once, and another key its own", async () => {
    const url = await serve("readkey-0123456789abcdef:read, otherkey-0123456789abcdef:read");
    const open = (key: string) => fetch(`${url}/dashboard/events`, { headers: { "x-api-key": key } });
    const held = await Promise.all(Array.from({ length: 10 }, () => open("readkey-0123456789abcdef")));
    expect(held.map((r) => r.status)).toEqual(Array(10).fill(200));
    const refused = await open("readkey-0123456789abcdef");
    expect(refused.status).toBe(429);
    expect(await refused.json()).toEqual({ code: "resource_exhausted", message: "at most 10 dashboards at once per client" });
    const other = await open("otherkey-0123456789abcdef");
    expect(other.status).toBe(200);
    // A stream closed gives its place back.
    await held.pop()!.body!.cancel();
    await expect
      .poll(async () => {
        const again = await open("readkey-0123456789abcdef");
        if (again.status === 200) held.push(again);
        else await again.body?.cancel();
        return again.status;
      })
      .toBe(200);
    await Promise.all([...held, other].map((r) => r.body!.cancel()));
  });

  it("gives back the place of a stream closed while its credentials were checked", async () => {
    // Credentials checked in 300 ms, as a limit's round trip to a slow Redis; as many streams closed meanwhile as may be open.
    const slow = { checkDashboard: async () => (await sleep(300), "key:k1") } as unknown as Access;
    const url = await serve("", undefined, slow);
    await Promise.all(
      Array.from({ length: MAX_DASHBOARD_STREAMS }, async () => {
        const gone = new AbortController();
        setTimeout(() => gone.abort(), 50);
        await expect(fetch(`${url}/dashboard/events`, { signal: gone.signal })).rejects.toThrow();
      }),
    );
    await sleep(400);
    const res = await fetch(`${url}/dashboard/events`);
    expect(res.status).toBe(200);
    await res.body!.cancel();
  });

  it("needs a valid key for the stream when the gateway has keys, but not for the page", async () => {
    const url = await serve("readkey-0123456789abcdef:read");
    const refused = await fetch(`${url}/dashboard/events`);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({
      code: "unauthenticated",
      message: "credentials required: an x-api-key header or authorization: Bearer <user token>",
    });
    expect((await fetch(`${url}/dashboard/events`, { headers: { "x-api-key": "wrong-key-0123456789" } })).status).toBe(401);
    const [snapshot] = await snapshots(url, 1, { "x-api-key": "readkey-0123456789abcdef" });
    expect(snapshot!.clicks.published).toBe(40);
    expect((await fetch(`${url}/`)).status).toBe(200);
  });
});
