import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@recsys/contracts/grpc/health/v1/health";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "../harness/clients.js";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { privateNats, privatePostgres, privateRedis, type PrivateServer } from "../harness/servers.js";
import { referenceClicks, referencePages, repoRoot, startStack, type ServiceName, type TestStack } from "../harness/stack.js";
import { loadgen, timeline } from "./loadgen.js";

// NATS, Redis and PostgreSQL restarted under load. They are private servers on free ports, so the
// machine's own stay up for everything else.
let nats: PrivateServer;
let redis: PrivateServer;
let postgres: PrivateServer;
let stack: TestStack;
let ref: ReferenceWorkload;
let pids: Record<ServiceName, number | undefined>;
const events: string[] = [];
const SERVICES: ServiceName[] = ["ingest", "covisit", "embedder", "profile", "gateway"];

beforeAll(async () => {
  ref = await referenceWorkload();
  [nats, redis, postgres] = await Promise.all([privateNats(), privateRedis(), privatePostgres()]);
  stack = await startStack("deps", { NATS_URL: nats.url, REDIS_URL: redis.url, DATABASE_URL: postgres.url, BUS_ACK_WAIT_MS: "3000" });
  pids = Object.fromEntries(SERVICES.map((s) => [s, stack.process(s)?.pid])) as typeof pids;
}, 180_000);
afterAll(async () => {
  console.info(`events:\n  ${events.join("\n  ")}`);
  await stack?.stop();
  await Promise.all([nats, redis, postgres].map((s) => s?.destroy()));
});

/** The service's health as /healthz and grpc.health.v1 Check both say it, when they agree. */
async function health(service: ServiceName): Promise<string> {
  try {
    const res = await fetch(`${stack.url[service]}/healthz`, { signal: AbortSignal.timeout(2_000) });
    const http = ((await res.json()) as { status: string }).status;
    const grpc =
      HealthCheckResponse_ServingStatus[
        (await createClient(Health, createGrpcTransport({ baseUrl: stack.url[service] })).check({}, { timeoutMs: 2_000 })).status
      ];
    return http === grpc ? http : `/healthz ${http}, gRPC ${grpc}`;
  } catch (err) {
    return `unreachable: ${String(err)}`;
  }
}

/** Waits until every listed service reports `status` on /healthz; records how long it took. */
async function expectHealth(services: ServiceName[], status: "SERVING" | "NOT_SERVING", why: string) {
  const t0 = Date.now();
  for (const s of services) await expect.poll(() => health(s), { timeout: 20_000, interval: 100 }).toBe(status);
  events.push(`${why}: ${services.join(", ")} ${status} after ${Date.now() - t0} ms`);
}

function expectNoRestarts(except: ServiceName[] = []) {
  for (const s of SERVICES.filter((x) => !except.includes(x))) {
    expect(stack.process(s)?.exitCode, `${s} exited`).toBeNull();
    expect(stack.process(s)?.pid, `${s} was restarted`).toBe(pids[s]);
  }
}

describe("a dependency restarts under load", () => {
  it("PostgreSQL, during a content load: profile reports NOT_SERVING, reconnects, and every page is stored once", async () => {
    const load = loadgen(stack, ["content", referencePages, "--rate", "400", "--wait", "--wait-timeout", "180000"]);
    await timeline([
      [
        1_500,
        async () => {
          await postgres.stop();
          events.push("PostgreSQL stopped");
          await expectHealth(["profile", "gateway"], "NOT_SERVING", "PostgreSQL down");
        },
      ],
      [
        5_000,
        async () => {
          await postgres.start();
          await expectHealth(["profile", "gateway"], "SERVING", "PostgreSQL back");
        },
      ],
    ]);
    const summary = await load;
    expect(summary).toMatchObject({ sent: 2596, accepted: 2596, rejected: 0, pagesStored: 2596 });
    expectNoRestarts();
  }, 300_000);

  it("NATS, then Redis, during a replay: NOT_SERVING while down, nothing published is lost, and the counts rebuilt from CLICKS equal the SQL", async () => {
    const c = clientsOf(stack);
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "2000"]);
    await timeline([
      [
        1_500,
        async () => {
          await nats.stop();
          events.push("NATS stopped");
          await expectHealth(["ingest", "covisit", "embedder", "profile", "gateway"], "NOT_SERVING", "NATS down");
        },
      ],
      [
        5_000,
        async () => {
          await nats.start();
          await expectHealth(["ingest", "covisit", "embedder", "profile", "gateway"], "SERVING", "NATS back");
        },
      ],
      [
        8_000,
        async () => {
          await redis.stop();
          events.push("Redis stopped");
          await expectHealth(["covisit", "gateway"], "NOT_SERVING", "Redis down");
          await redis.start();
          events.push("Redis started again, empty");
          // Back, but without the counts: covisit says so instead of answering from nothing.
          await sleep(1_000);
          expect(await health("covisit")).toBe("NOT_SERVING");
          const answer = await c.gateway.recommendation({ url: ref.urls[0]! }).then(
            () => "answered",
            (e) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
          );
          expect(answer).toMatch(/^Unavailable: .*lost/);
        },
      ],
    ]);
    const summary = await replay;
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0 });
    expect(summary.retries, "loadgen sent again what ingest could not publish while NATS was down").toBeGreaterThan(0);
    events.push(`replay: loadgen retried ${String(summary.retries)} calls`);
    expectNoRestarts();

    // The rebuild: covisit stopped, its keys and consumer dropped, then CLICKS applied from the start.
    await stack.kill("covisit");
    const rebuild = () => spawnSync(process.execPath, [join(repoRoot, "services/covisit/dist/rebuild-cli.js")], { env: stack.env, encoding: "utf8" });
    await expect.poll(() => rebuild().status, { timeout: 30_000, interval: 1_000 }).toBe(0);
    await stack.start("covisit");
    await waitApplied(stack, ref.pages.length);
    await expectRecommendationsExact(stack, ref);
    await expectSimilarContentExact(stack, ref);
    expectNoRestarts(["covisit"]);
  }, 400_000);
});
