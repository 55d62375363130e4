import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import getPort from "get-port";
import { freePort } from "./stack.js";

/**
 * Private NATS, Redis and PostgreSQL servers for tests that stop and restart them: the machine's
 * own servers stay up for everything else. Same binaries as the machine's, on free ports.
 */
export interface PrivateServer {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops for good and deletes its files. */
  destroy(): Promise<void>;
}

/** Whether a server's process is still there. */
const running = (c: ChildProcess | undefined): c is ChildProcess => c !== undefined && c.exitCode === null && c.signalCode === null;

/** Waits until something listens on `port`; fails at once if `child`, the process that should, has exited. */
async function waitForPort(port: number, child?: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && !running(child)) throw new Error(`the server of port ${port} exited while starting`);
    const open = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1");
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** A server run as a child process, stopped with SIGTERM (both shut down cleanly on it). */
function childServer(url: string, port: number, run: () => ChildProcess, cleanup: () => void): PrivateServer {
  let child: ChildProcess | undefined;
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!running(c)) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await exited;
  };
  return {
    url,
    stop,
    async start() {
      child = run();
      await waitForPort(port, child);
    },
    async destroy() {
      await stop();
      cleanup();
    },
  };
}

/** Redis that, like the machine's, keeps nothing on disk: a restart empties it. `args`: more flags, e.g. a memory limit. */
export async function privateRedis(args: string[] = []): Promise<PrivateServer> {
  const port = await freePort();
  const server = childServer(
    `redis://127.0.0.1:${port}`,
    port,
    () => spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args], { stdio: "ignore" }),
    () => {},
  );
  await server.start();
  return server;
}

/**
 * NATS with JetStream on a store of its own: what was published survives a restart. `config`: a
 * configuration file (its users, say), whose variables `env` sets.
 */
export async function privateNats(opts: { config?: string; env?: NodeJS.ProcessEnv } = {}): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "recsys-nats-"));
  const config = opts.config ? ["-c", opts.config] : [];
  const server = childServer(
    `nats://127.0.0.1:${port}`,
    port,
    () =>
      spawn("nats-server", [...config, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
        stdio: "ignore",
        env: { ...process.env, ...opts.env },
      }),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  await server.start();
  return server;
}

/** A server process of a cluster, started by `run` on `port`: killed as a crash would (SIGKILL), or stopped cleanly. */
function clusterMember(port: number, run: () => ChildProcess) {
  let child: ChildProcess | undefined;
  const stop = async (signal: NodeJS.Signals) => {
    const c = child;
    child = undefined;
    if (!running(c)) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(signal);
    await exited;
  };
  return {
    kill: () => stop("SIGKILL"),
    stopCleanly: () => stop("SIGTERM"),
    running: () => running(child),
    async start() {
      child = run();
      await waitForPort(port, child);
    },
  };
}

/** One server of a private NATS cluster: its name in the cluster, its client URL, and a way to kill it as a crash would. */
export interface ClusterNode {
  name: string;
  url: string;
  /** SIGKILL: no goodbye to its routes or clients. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

/**
 * A JetStream cluster of `size` nats-server processes on free ports, routed to each other, each on a store of its own. `url`
 * lists every client URL, comma-separated, as NATS_URL takes them. Resolves once the cluster has a JetStream meta leader.
 */
export async function privateNatsCluster(size = 3): Promise<{ url: string; nodes: ClusterNode[]; destroy(): Promise<void> }> {
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(",");
  const dirs = ports.map(() => mkdtempSync(join(tmpdir(), "recsys-nats-cluster-")));
  const nodes = ports.map((port, i) => {
    const name = `n${i + 1}`;
    const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dirs[i]!, "-n", name, "--cluster_name", "recsys"];
    const member = clusterMember(port, () =>
      spawn("nats-server", [...args, "--cluster", `nats://127.0.0.1:${routePorts[i]}`, "--routes", routes], { stdio: "ignore" }),
    );
    return { name, url: `nats://127.0.0.1:${port}`, ...member };
  });
  const destroy = async () => {
    await Promise.all(nodes.map((n) => n.stopCleanly()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    // Streams can be created once the servers have elected a meta leader.
    const nc = await connect({ servers: nodes.map((n) => n.url) });
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ok = await jetstreamManager(nc)
          .then((jsm) => jsm.getAccountInfo())
          .then(
            () => true,
            () => false,
          );
        if (ok) break;
        if (Date.now() > deadline) throw new Error("the NATS cluster elected no JetStream meta leader in 30 s");
        await sleep(250);
      }
    } finally {
      await nc.close();
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    url: nodes.map((n) => n.url).join(","),
    nodes: nodes.map(({ name, url: u, kill, start }) => ({ name, url: u, kill, start })),
    destroy,
  };
}

/** One node of a private Redis Cluster. */
export interface RedisClusterNode {
  port: number;
  url: string;
  /** SIGKILL: no goodbye; its replica takes its slots once the others agree it failed (cluster-node-timeout). */
  kill(): Promise<void>;
  /** Starts it again from its nodes.conf: it rejoins, as a replica of whoever took its slots. */
  start(): Promise<void>;
  /** The last lines of its log. */
  log(): string;
}

/** What `redis-cli -p PORT ARGS…` printed, trimmed; throws (with redis-cli's error) if it fails or takes over 5 s. */
export function redisCli(port: number, ...args: string[]): string {
  return execFileSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8", timeout: 5_000, stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** The same, or undefined when the node does not answer (down, starting, or too slow). */
function redisCliIfUp(port: number, ...args: string[]): string | undefined {
  try {
    return redisCli(port, ...args);
  } catch {
    return undefined;
  }
}

/**
 * A Redis Cluster of `primaries` primaries with a replica each (redis-server --cluster-enabled yes, joined by redis-cli --cluster
 * create), keeping nothing on disk but its nodes.conf. cluster-node-timeout 5 s, as the deploy files set it. `url` lists every node,
 * comma-separated, as REDIS_URL takes a cluster's. Resolves once every node says cluster_state:ok and every primary's replica is online.
 */
export async function privateRedisCluster(
  primaries = 3,
): Promise<{ url: string; nodes: RedisClusterNode[]; primaries(): Set<number>; destroy(): Promise<void> }> {
  const ports: number[] = [];
  while (ports.length < 2 * primaries) {
    // A node also listens on its cluster bus, its port + 10,000: that one must be free too.
    const port = await freePort();
    if (port + 10_000 <= 65_535 && (await getPort({ host: "127.0.0.1", port: port + 10_000 })) === port + 10_000 && !ports.includes(port)) ports.push(port);
  }
  const dir = mkdtempSync(join(tmpdir(), "recsys-redis-cluster-"));
  const nodes = ports.map((port) => {
    const logFile = join(dir, `redis-${port}.log`);
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", logFile];
    const clusterArgs = ["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--cluster-node-timeout", "5000"];
    const member = clusterMember(port, () => spawn("redis-server", [...args, ...clusterArgs, "--maxmemory-policy", "noeviction"], { stdio: "ignore" }));
    const log = () => {
      try {
        return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-20).join("\n");
      } catch {
        return "(no log)";
      }
    };
    const answers = () => redisCliIfUp(port, "ping") === "PONG";
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      stopCleanly: member.stopCleanly,
      kill: member.kill,
      log,
      // It exits if it cannot bind its port or its cluster bus (the port + 10,000): it has started once it answers PING.
      async start() {
        await member.start().catch((err: unknown) => {
          throw new Error(`${err instanceof Error ? err.message : String(err)}:\n${log()}`);
        });
        const deadline = Date.now() + 20_000;
        while (!answers()) {
          if (!member.running()) throw new Error(`redis-server :${port} exited while starting:\n${log()}`);
          if (Date.now() > deadline) throw new Error(`redis-server :${port} does not answer PING 20 s after it started:\n${log()}`);
          await sleep(50);
        }
      },
    };
  });
  const destroy = async () => {
    await Promise.all(nodes.map((n) => n.stopCleanly()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    execFileSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "1", "--cluster-yes"], {
      stdio: "ignore",
      timeout: 60_000,
    });
    const deadline = Date.now() + 60_000;
    const clusterOk = (port: number) => redisCliIfUp(port, "cluster", "info")?.includes("cluster_state:ok") ?? false;
    // A primary's writes wait for its replica (REDIS_WAIT_REPLICAS=1) once the replica has synced: every primary then has it online.
    const replicated = (port: number) => {
      const info = redisCliIfUp(port, "info", "replication");
      return info !== undefined && (!info.includes("role:master") || /slave0:.*state=online/.test(info));
    };
    while (!ports.every((p) => clusterOk(p) && replicated(p))) {
      if (Date.now() > deadline) throw new Error("the Redis Cluster did not reach cluster_state:ok with every replica online in 60 s");
      await sleep(200);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    url: nodes.map((n) => n.url).join(","),
    nodes: nodes.map(({ port, url, kill, start, log }) => ({ port, url, kill, start, log })),
    /** The ports of the nodes that are primaries now (ROLE); a node that does not answer is none. */
    primaries() {
      return new Set(ports.filter((port) => redisCliIfUp(port, "role")?.startsWith("master")));
    },
    destroy,
  };
}

const PG_BIN = "/usr/lib/postgresql/15/bin";

/**
 * A PostgreSQL cluster of its own (pgvector comes with the machine's binaries), run as user postgres; with `replicaOf`, a streaming
 * replica of that one (pg_basebackup), read-only, replaying what the primary writes.
 */
export async function privatePostgres(opts: { replicaOf?: PrivateServer } = {}): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "recsys-pg-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const asPostgres = (cmd: string, args: string[]) =>
    execFileSync("runuser", ["-u", "postgres", "--", join(PG_BIN, cmd), ...args], { stdio: "pipe", cwd: "/" });
  if (opts.replicaOf) {
    // A streaming replica: a base backup of the primary, with standby.signal and the primary's address written (-R).
    const primaryPort = new URL(opts.replicaOf.url).port;
    asPostgres("pg_basebackup", ["-h", "127.0.0.1", "-p", primaryPort, "-U", "postgres", "-D", data, "-R", "-X", "stream", "--no-sync"]);
  } else asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const server: PrivateServer = {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      asPostgres("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
      await waitForPort(port);
    },
    async stop() {
      asPostgres("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
    },
    async destroy() {
      try {
        asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
