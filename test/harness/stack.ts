import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../../scripts/reset.mjs";
// @ts-expect-error plain ESM script shared with `pnpm stack:up` and `pnpm cluster:up`
import { serviceArgs } from "../../scripts/service-command.mjs";
import getPort from "get-port";
import { natsServers } from "@recsys/bus";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const sharedData = join(repoRoot, "../shared/data");
export const referenceClicks = join(sharedData, "clickstream.json.gz");

export const referencePages = join(sharedData, "content.json.gz");

/** The machine's own servers (scripts/infra.sh), unless the environment names others; the services' defaults are the same. */
export const machine = {
  nats: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
  redis: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  postgres: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
};

/** The NATS servers a stack's services use: its own NATS_URL (a private server or cluster), or the machine's. */
export const natsOf = (stack: { env: NodeJS.ProcessEnv }): string[] => natsServers(stack.env.NATS_URL ?? machine.nats);

export type ServiceName = "ingest" | "covisit" | "embedder" | "profile" | "analytics" | "archive" | "gateway";
const ORDER: ServiceName[] = ["ingest", "covisit", "embedder", "profile", "analytics", "archive", "gateway"];
/** Started only when a test names them in `services`: no other test waits for them or shares the cores with them. */
const OPT_IN: ServiceName[] = ["analytics", "archive"];
const PORT_VAR: Record<ServiceName, string> = {
  ingest: "INGEST_PORT",
  covisit: "COVISIT_PORT",
  embedder: "EMBEDDER_PORT",
  profile: "PROFILE_PORT",
  analytics: "ANALYTICS_PORT",
  archive: "ARCHIVE_PORT",
  gateway: "GATEWAY_PORT",
};

export interface TestStack {
  namespace: string;
  url: Record<ServiceName, string>;
  env: NodeJS.ProcessEnv;
  /** Starts the service again on its port (after kill), with extra environment if given; waits until healthy. */
  start(service: ServiceName, extraEnv?: NodeJS.ProcessEnv): Promise<void>;
  /** SIGKILL: no shutdown hook runs, like a crash. */
  kill(service: ServiceName): Promise<void>;
  /** Starts the service without waiting for its health (it may be meant to crash). */
  spawn(service: ServiceName, extraEnv?: NodeJS.ProcessEnv): ChildProcess;
  /** The running process of the service (for its pid, or to see how it exited). */
  process(service: ServiceName): ChildProcess | undefined;
  /** One more process of the service in the same namespace, on a port of its own. */
  addReplica(service: ServiceName): Promise<Replica>;
  stop(): Promise<void>;
}

export interface Replica {
  url: string;
  kill(): Promise<void>;
}

/** A TCP port nothing listens on right now, on loopback. */
export const freePort = (): Promise<number> => getPort({ host: "127.0.0.1" });

/** A namespace of its own and a free port for every service, as the environment the services read. */
export async function privateStackEnv(label: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const namespace = `t${label.replace(/[^a-z0-9]/g, "")}${process.pid}${Math.floor(Math.random() * 1e6)}`;
  const ports = Object.fromEntries(await Promise.all(ORDER.map(async (s) => [s, await freePort()] as const))) as Record<ServiceName, number>;
  const url = Object.fromEntries(ORDER.map((s) => [s, `http://127.0.0.1:${ports[s]}`])) as Record<ServiceName, string>;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RECSYS_NAMESPACE: namespace,
    INGEST_URL: url.ingest,
    COVISIT_URL: url.covisit,
    EMBEDDER_URL: url.embedder,
    PROFILE_URL: url.profile,
    ANALYTICS_URL: url.analytics,
    ...Object.fromEntries(ORDER.map((s) => [PORT_VAR[s], String(ports[s])])),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    ...extraEnv,
  };
  return { namespace, ports, url, env };
}

/**
 * Starts the built services as real processes, in a namespace of their own, on free ports.
 * `services`: only these (analytics and archive only when named); `serviceEnv`: more environment for one service (its own credentials).
 */
export async function startStack(
  label: string,
  extraEnv: NodeJS.ProcessEnv = {},
  opts: { services?: ServiceName[]; serviceEnv?: Partial<Record<ServiceName, NodeJS.ProcessEnv>> } = {},
): Promise<TestStack> {
  const { namespace, ports, url, env } = await privateStackEnv(label, extraEnv);
  const logDir = join(repoRoot, "test/artifacts/logs");
  mkdirSync(logDir, { recursive: true });
  const procs = new Map<ServiceName, ChildProcess>();
  const everyProcess: ChildProcess[] = [];

  function spawnService(service: ServiceName, port: number, logName: string, extra: NodeJS.ProcessEnv = {}) {
    const child = spawn(process.execPath, serviceArgs(repoRoot, service), {
      env: { ...env, ...opts.serviceEnv?.[service], ...extra, [PORT_VAR[service]]: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log = createWriteStream(join(logDir, `${namespace}-${logName}.log`), { flags: "a" });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    everyProcess.push(child);
    return child;
  }

  async function start(service: ServiceName, extra: NodeJS.ProcessEnv = {}) {
    const child = spawnService(service, ports[service], service, extra);
    procs.set(service, child);
    await waitHealthy(url[service], child, service);
  }

  for (const s of ORDER.filter((s) => (opts.services ? opts.services.includes(s) : !OPT_IN.includes(s)))) await start(s);

  return {
    namespace,
    url,
    env,
    start,
    kill: (service) => killHard(procs.get(service)),
    process: (service) => procs.get(service),
    spawn(service, extra) {
      const child = spawnService(service, ports[service], service, extra);
      procs.set(service, child);
      return child;
    },
    async addReplica(service) {
      const port = await freePort();
      const child = spawnService(service, port, `${service}-replica${everyProcess.length}`);
      await waitHealthy(`http://127.0.0.1:${port}`, child, `${service} replica`);
      return { url: `http://127.0.0.1:${port}`, kill: () => killHard(child) };
    },
    async stop() {
      await Promise.all(
        everyProcess.map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once("exit", r));
          child.kill("SIGTERM");
          await exited;
        }),
      );
      await resetNamespace(env.RECSYS_NAMESPACE ?? namespace, env);
    },
  };
}

async function killHard(child: ChildProcess | undefined) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

async function waitHealthy(base: string, child: ChildProcess, name: string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${name} not healthy after 60 s`);
}
