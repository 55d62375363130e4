import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { loadContent } from "@recsys/loadgen/content";
import { replay } from "@recsys/loadgen/replay";
import { waitFor } from "@recsys/loadgen/sender";
import { Pool } from "undici";
import { clicksFile, pagesFile, root } from "./reference-data.js";
import { samples, total } from "./service-metrics.js";
import getPort from "get-port";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../../../scripts/reset.mjs";
// @ts-expect-error plain ESM script shared with `pnpm stack:up` and `pnpm cluster:up`
import { serviceArgs } from "../../../scripts/service-command.mjs";

// The running stack the bench measures: its addresses, its health, calls to its gateway, and
// starting what is missing.

const env = process.env;
export const url = {
  gateway: env.GATEWAY_URL ?? `http://127.0.0.1:${env.GATEWAY_PORT ?? 8080}`,
  ingest: env.INGEST_URL ?? `http://127.0.0.1:${env.INGEST_PORT ?? 50051}`,
  covisit: env.COVISIT_URL ?? `http://127.0.0.1:${env.COVISIT_PORT ?? 50052}`,
  embedder: env.EMBEDDER_URL ?? `http://127.0.0.1:${env.EMBEDDER_PORT ?? 50053}`,
  profile: env.PROFILE_URL ?? `http://127.0.0.1:${env.PROFILE_PORT ?? 50054}`,
  analytics: env.ANALYTICS_URL ?? `http://127.0.0.1:${env.ANALYTICS_PORT ?? 50055}`,
  archive: env.ARCHIVE_URL ?? `http://127.0.0.1:${env.ARCHIVE_PORT ?? 50056}`,
};

export const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function healthy(base: string): Promise<boolean> {
  return fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
    (r) => r.ok,
    () => false,
  );
}

/**
 * Kept-alive connections to the gateway. The load generator shares the two cores with the stack:
 * undici's pool costs it about 50-90 µs of CPU a request where fetch() costs about 450.
 */
let gatewayPool: Pool | undefined;

/** POST to a gateway Connect JSON method; throws on an error answer. */
export async function gatewayCall(method: string, body: unknown): Promise<unknown> {
  gatewayPool ??= new Pool(url.gateway, { connections: 128 });
  const res = await gatewayPool.request({
    path: `/recsys.gateway.v1.GatewayService/${method}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await res.body.json()) as unknown;
  if (res.statusCode !== 200) throw new Error(`${method}: ${JSON.stringify(json)}`);
  return json;
}

/** Closes the kept-alive gateway connections, so that the process can end. */
export async function closeGateway(): Promise<void> {
  await gatewayPool?.close();
}

/**
 * The stack as `pnpm stack:up` runs it, started if the gateway is not healthy, with all pages loaded and the reference clicks applied,
 * so that the reference users SimilarContent is asked about have interests (a stack that has them counts the replay as duplicates).
 */
export async function ensureStack(referenceUser: string) {
  if (!(await healthy(url.gateway))) {
    log("starting the stack (node scripts/stack.mjs up)");
    const up = spawnSync(process.execPath, [join(root, "scripts/stack.mjs"), "up"], { stdio: ["ignore", "inherit", "inherit"] });
    if (up.status !== 0) throw new Error("the stack did not start");
  }
  const profile = createClient(ProfileService, createGrpcTransport({ baseUrl: url.profile }));
  if ((await profile.progress({})).pages < 2596n) {
    log("loading the reference pages");
    await loadContent({
      file: pagesFile,
      rate: 0,
      target: url.ingest,
      embedder: url.embedder,
      profile: url.profile,
      wait: true,
      batchSize: 100,
      concurrency: 2,
      waitTimeoutMs: 600_000,
    });
  }
  const similar = (await profile.similarContent({ userid: referenceUser, limit: 1 })).items[0];
  if (!similar || similar.similarity === 0) {
    log("applying the reference clicks");
    const s = await replay({
      file: clicksFile,
      rate: 0,
      target: url.ingest,
      covisit: url.covisit,
      wait: true,
      shiftTime: false,
      batchSize: 500,
      concurrency: 4,
      waitTimeoutMs: 300_000,
    });
    let floor = 0n;
    await waitFor(
      async () => (floor = (await profile.progress({})).clicksAckFloor) >= BigInt(s.lastStreamSequence),
      300_000,
      async () => `profile has folded in up to stream sequence ${floor}, not ${s.lastStreamSequence},`,
    );
  }
}

/** Ends a service the bench started (SIGTERM) and waits for it to exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await exited;
}

/**
 * A second embedder, batching off (EMBED_MAX_BATCH=1), on a free port in a namespace of its own; `stop` ends it and deletes its
 * namespace's streams.
 */
export async function startUnbatchedEmbedder(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await getPort({ host: "127.0.0.1" });
  const namespace = "benchunbatched";
  const child = spawn(process.execPath, serviceArgs(root, "embedder") as string[], {
    env: { ...env, EMBEDDER_PORT: String(port), EMBED_MAX_BATCH: "1", RECSYS_NAMESPACE: namespace, LOG_LEVEL: "warn" },
    stdio: "ignore",
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300 && !(await healthy(base)); i++) await sleep(200);
  return {
    url: base,
    async stop() {
      await stopChild(child);
      await resetNamespace(namespace, env);
    },
  };
}

/** Resident memory of each service, from its own /metrics. */
export async function rssMiB(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, base] of Object.entries(url)) {
    const text = await fetch(`${base}/metrics`).then(
      (r) => r.text(),
      () => "",
    );
    const m = /^process_resident_memory_bytes\{[^}]*\} (\d+)/m.exec(text);
    if (m) out[name] = Math.round(Number(m[1]) / 2 ** 20);
  }
  return out;
}

/** covisit's ack floor on CLICKS: after ensureStack, every click the stream holds. */
export async function clicksApplied(): Promise<bigint> {
  const covisit = createClient(CovisitService, createGrpcTransport({ baseUrl: url.covisit }));
  return (await covisit.progress({})).ackFloorStreamSequence;
}

/** The pid of a service `pnpm stack:up` started (its pid file under RECSYS_STACK_DIR, default .stack), if it runs. */
export function stackPid(service: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(env.RECSYS_STACK_DIR ?? join(root, ".stack"), "pids", `${service}.pid`), "utf8"));
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Each service's CPU seconds so far; a service that does not answer its metrics reads NaN (busy: never quiet), not a reason to stop. */
async function stackCpuSeconds(): Promise<Record<string, number>> {
  const readings = await Promise.all(
    Object.entries(url).map(([service, base]) =>
      samples(base).then(
        (s) => [service, total(s, "process_cpu_seconds_total")] as const,
        () => [service, Number.NaN] as const,
      ),
    ),
  );
  return Object.fromEntries(readings);
}

/**
 * A stack whose services together use less than this share of a core is quiet. Idle, their metrics read every second, they used
 * 0.11-0.21 of a core a second on a slow VM (15 readings), where a tenth was never met; during a replay of the reference clicks,
 * and for two seconds after it while analytics and covisit caught up, 0.6-1.0.
 */
const QUIET_CORES = 0.25;
const QUIET_SECONDS = 2;

/**
 * Waits until the stack is quiet (its services together under a quarter of a core for two seconds in a row), so that a phase
 * measured next does not share the cores with the backlog of the one before it (the consumers still folding in clicks ingested
 * without waiting). Gives up after `timeoutMs` and says so, with each service's share of a core in the last second: the phase
 * then runs as things are.
 */
export async function quiet(timeoutMs = 120_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  let before = await stackCpuSeconds();
  let last: Record<string, number> = {};
  let quietFor = 0;
  while (performance.now() < until) {
    const t0 = performance.now();
    await sleep(1_000);
    const now = await stackCpuSeconds();
    const seconds = (performance.now() - t0) / 1000;
    last = Object.fromEntries(Object.keys(now).map((service) => [service, (now[service]! - before[service]!) / seconds]));
    before = now;
    // NaN (a service that did not answer) is never below the bound.
    quietFor = Object.values(last).reduce((a, b) => a + b, 0) < QUIET_CORES ? quietFor + 1 : 0;
    if (quietFor >= QUIET_SECONDS) return;
  }
  const shares = Object.entries(last)
    .map(([service, cores]) => `${service} ${Number.isNaN(cores) ? "no answer" : cores.toFixed(2)}`)
    .join(", ");
  log(`the stack was still busy after ${timeoutMs / 1000} s (cores in the last second: ${shares}); measuring anyway`);
}
