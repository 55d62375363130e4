import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, expect, it } from "vitest";
import { repoRoot, startStack, type TestStack } from "./harness/stack.js";

// An independent gRPC implementation, built from the .proto files alone, against the services.
let stack: TestStack;
beforeAll(async () => {
  stack = await startStack("grpcjs");
});
afterAll(async () => stack?.stop());

function load(file: string) {
  const def = protoLoader.loadSync(join(repoRoot, "proto", file), {
    includeDirs: [join(repoRoot, "proto")],
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def) as any;
}

function call<T>(client: any, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => client[method](req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

it("speaks gRPC with @grpc/grpc-js: publish clicks to ingest, read co-visits from covisit", async () => {
  const ingestPkg = load("recsys/ingest/v1/ingest.proto");
  const covisitPkg = load("recsys/covisit/v1/covisit.proto");
  const host = (u: string) => u.replace("http://", "");
  const ingest = new ingestPkg.recsys.ingest.v1.IngestService(host(stack.url.ingest), grpc.credentials.createInsecure());
  const covisit = new covisitPkg.recsys.covisit.v1.CovisitService(host(stack.url.covisit), grpc.credentials.createInsecure());

  const res = await call<{ results: Array<{ accepted?: { event_id: string; stream_sequence: string } }> }>(ingest, "PublishClicks", {
    clicks: [
      { userid: "grpc", url: "https://e.org/from", event_time: "2024-01-02T00:00:00Z" },
      { userid: "grpc", url: "https://e.org/to", event_time: "2024-01-02T00:05:00Z" },
    ],
  });
  expect(res.results).toHaveLength(2);
  const last = BigInt(res.results[1]!.accepted!.stream_sequence);
  for (let i = 0; i < 100; i++) {
    const p = await call<{ ack_floor_stream_sequence: string }>(covisit, "Progress", {});
    if (BigInt(p.ack_floor_stream_sequence) >= last) break;
    await sleep(50);
  }
  const rec = await call<{ items: Array<{ recommendation: string; frequency: string }> }>(covisit, "Recommendation", { url: "https://e.org/from", limit: 5 });
  expect(rec.items).toEqual([{ recommendation: "https://e.org/to", frequency: "1" }]);

  const bad = await call(covisit, "Recommendation", { url: "https://e.org/from", limit: 5000 }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  // connect-es percent-encodes grpc-message with encodeURIComponent and grpc-js undoes it with
  // decodeURI, which leaves reserved characters such as ":" encoded.
  expect(decodeURIComponent((bad as grpc.ServiceError).details)).toMatch(/^limit: must be between 1 and 1000/);
  ingest.close();
  covisit.close();
});

it("serves Connect JSON over HTTP/1.1 on the same port, as curl would use it", async () => {
  const res = await fetch(`${stack.url.covisit}/recsys.covisit.v1.CovisitService/Recommendation`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: "https://e.org/nowhere" }),
  });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({});
});

it("answers grpc.health.v1 Check and Watch on every port, as grpc_health_probe and Kubernetes would ask", async () => {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(repoRoot, "proto/grpc/health/v1/health.proto"), { enums: String, defaults: true })) as any;
  const services: Array<[string, string]> = [
    ["ingest", "recsys.ingest.v1.IngestService"],
    ["covisit", "recsys.covisit.v1.CovisitService"],
    ["embedder", "recsys.embedder.v1.EmbedderService"],
    ["profile", "recsys.profile.v1.ProfileService"],
    ["gateway", "recsys.gateway.v1.GatewayService"],
  ];
  for (const [name, service] of services) {
    const health = new pkg.grpc.health.v1.Health(stack.url[name as keyof typeof stack.url].replace("http://", ""), grpc.credentials.createInsecure());
    expect(await call(health, "Check", { service: "" }), name).toEqual({ status: "SERVING" });
    expect(await call(health, "Check", { service }), name).toEqual({ status: "SERVING" });
    const unknown = await call(health, "Check", { service: "no.such.Service" }).catch((e: grpc.ServiceError) => e);
    expect((unknown as grpc.ServiceError).code, name).toBe(grpc.status.NOT_FOUND);
    const first = await new Promise((resolve, reject) => {
      const stream = health.Watch({ service });
      stream.once("data", (m: unknown) => {
        resolve(m);
        stream.cancel();
      });
      stream.once("error", (e: grpc.ServiceError) => e.code !== grpc.status.CANCELLED && reject(e));
    });
    expect(first, name).toEqual({ status: "SERVING" });
    health.close();
  }
});

/** The value of the sample `name` whose labels include all of `labels` (in any order), or undefined. */
function sample(body: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of body.split("\n")) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

it("serves Prometheus metrics on every port: RPC latency by method and code, events out and in, lag, memory", async () => {
  const text = Object.fromEntries(
    await Promise.all(
      (["ingest", "covisit", "embedder", "profile", "gateway"] as const).map(async (s) => [s, await (await fetch(`${stack.url[s]}/metrics`)).text()] as const),
    ),
  );
  const CLICKS = `${stack.namespace.toUpperCase()}_CLICKS`;
  for (const [service, body] of Object.entries(text)) {
    expect(sample(body, "process_resident_memory_bytes", { service }), service).toBeGreaterThan(10 * 2 ** 20);
  }
  // The first test published two clicks of one user through ingest: one CLICKS message (a batch of
  // the user's partition), which covisit applied with one script and profile folded in with one call.
  expect(sample(text.ingest!, "recsys_rpc_duration_seconds_count", { method: "recsys.ingest.v1.IngestService/PublishClicks", code: "OK" })).toBe(1);
  expect(sample(text.ingest!, "recsys_published_messages_total", { stream: CLICKS })).toBe(1);
  expect(sample(text.covisit!, "recsys_consumed_messages_total", { stream: CLICKS, consumer: "covisit", outcome: "ack" })).toBe(1);
  expect(sample(text.covisit!, "recsys_covisit_clicks_total", { outcome: "applied" })).toBe(2);
  expect(sample(text.covisit!, "recsys_consumer_lag_messages", { stream: CLICKS, consumer: "covisit" })).toBe(0);
  expect(
    sample(text.covisit!, "recsys_rpc_duration_seconds_count", { method: "recsys.covisit.v1.CovisitService/Recommendation", code: "InvalidArgument" }),
  ).toBe(1);
  expect(sample(text.covisit!, "recsys_dependency_duration_seconds_count", { dependency: "redis", operation: "applyClicks" })).toBe(1);
  expect(sample(text.profile!, "recsys_consumed_messages_total", { stream: CLICKS, consumer: "profile-clicks", outcome: "ack" })).toBe(1);
  // No page is embedded in this stack: both clicks wait for theirs.
  expect(sample(text.profile!, "recsys_profile_clicks_total", { outcome: "parked" })).toBe(2);
  expect(sample(text.profile!, "recsys_dependency_duration_seconds_count", { dependency: "postgres", operation: "applyClicks" })).toBe(1);
});
