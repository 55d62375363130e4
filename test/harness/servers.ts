import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
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

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
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
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await exited;
  };
  return {
    url,
    stop,
    async start() {
      child = run();
      await waitForPort(port);
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

const PG_BIN = "/usr/lib/postgresql/15/bin";

/** A PostgreSQL cluster of its own (pgvector comes with the machine's binaries), run as user postgres. */
export async function privatePostgres(): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "recsys-pg-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const asPostgres = (cmd: string, args: string[]) =>
    execFileSync("runuser", ["-u", "postgres", "--", join(PG_BIN, cmd), ...args], { stdio: "pipe", cwd: "/" });
  asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
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
