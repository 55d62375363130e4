// The command each image runs, run here outside Docker with the compose settings pointed at this
// machine: every service starts, and its HEALTHCHECK tells serving from stopped.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync } from "node:fs";
import { join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../scripts/reset.mjs";
import { compose, composeEnv, CONFIG, dependsOn, imageOf, requiredComposeVars, SERVICES, toRepo, urlHost, type Image } from "./harness/deploy-config.js";
import { freePort, machine, repoRoot } from "./harness/stack.js";

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

/** Runs an image's HEALTHCHECK command here; its exit code. */
async function runHealthcheck(argv: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  const child = spawn(argv[0] === "node" ? process.execPath : argv[0]!, argv.slice(1), { env, stdio: "ignore" });
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const code = await exitOf(child);
  clearTimeout(timer);
  return code;
}

async function healthz(port: number): Promise<number | undefined> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) })).status;
  } catch {
    return undefined;
  }
}

describe("each image's command, run here with the compose settings", () => {
  const namespace = `tdeploy${process.pid}${Math.floor(Math.random() * 1e6)}`;
  const running = new Map<string, ChildProcess>();

  afterAll(async () => {
    await Promise.all(
      [...running.values()].map(async (child) => {
        child.kill("SIGKILL");
        await exitOf(child);
      }),
    );
    await resetNamespace(namespace);
  });

  it("every service starts from its CMD and answers /healthz with 200; the HEALTHCHECK passes, then fails once it stops", async () => {
    const services = compose().services;
    const ports = Object.fromEntries(await Promise.all(SERVICES.map(async (s) => [s, await freePort()] as const))) as Record<string, number>;
    const localInfra: Record<string, string> = {
      nats: machine.nats,
      redis: machine.redis,
      postgres: machine.postgres,
    };
    const logDir = join(repoRoot, "test/artifacts/logs");
    mkdirSync(logDir, { recursive: true });
    // What deploy/compose-secrets.sh would generate.
    const secrets = Object.fromEntries(requiredComposeVars().map((v) => [v, `p${randomBytes(16).toString("hex")}`]));

    /** The container's environment (image ENV, then compose), pointed at this machine. */
    function localEnv(name: string, image: Image): NodeJS.ProcessEnv {
      const env: Record<string, string> = { ...image.env, ...composeEnv(services[name], secrets) };
      for (const [key, value] of Object.entries(env)) {
        if (value === image.workdir || value.startsWith(`${image.workdir}/`)) env[key] = toRepo(name, image, value);
        const target = urlHost(value);
        if (target && target.host in localInfra) env[key] = localInfra[target.host]!;
        else if (target && SERVICES.includes(target.host)) env[key] = `http://127.0.0.1:${ports[target.host]}`;
      }
      // The machine's servers have no users: the services connect without the credentials, and profile grants no reader role.
      delete env.NATS_USER;
      delete env.NATS_PASSWORD;
      delete env.PG_READER_ROLE;
      return {
        PATH: process.env.PATH,
        ...env,
        HOST: "127.0.0.1",
        [CONFIG[name]!.portVar]: String(ports[name]),
        RECSYS_NAMESPACE: namespace,
      };
    }

    const started = new Set<string>();
    async function start(name: string) {
      const image = imageOf(name);
      const env = localEnv(name, image);
      const [cmd, ...args] = image.cmd;
      const child = spawn(cmd === "node" ? process.execPath : cmd!, args, { cwd: toRepo(name, image, "."), env, stdio: ["ignore", "pipe", "pipe"] });
      const logFile = join(logDir, `${namespace}-${name}.log`);
      const log = createWriteStream(logFile, { flags: "a" });
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
      running.set(name, child);

      const deadline = Date.now() + 45_000;
      let status: number | undefined;
      while ((status = await healthz(ports[name]!)) !== 200) {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}; see ${relative(repoRoot, logFile)}`);
        if (Date.now() > deadline) throw new Error(`${name}: /healthz ${status ?? "unreachable"} after 45 s; see ${relative(repoRoot, logFile)}`);
        await sleep(100);
      }
      expect(await runHealthcheck(image.healthcheck, env), `${name} HEALTHCHECK while serving`).toBe(0);
      started.add(name);
    }

    // In compose's order: a service starts once every service it depends on is healthy.
    const waiting = new Set(SERVICES);
    while (waiting.size) {
      const ready = [...waiting].filter((n) => Object.keys(dependsOn(services[n])).every((d) => !SERVICES.includes(d) || started.has(d)));
      expect(ready.length, `depends_on among ${[...waiting].join(", ")} can be satisfied`).toBeGreaterThan(0);
      for (const n of ready) waiting.delete(n);
      await Promise.all(ready.map(start));
    }
    expect([...started].sort()).toEqual([...SERVICES].sort());

    await Promise.all(
      SERVICES.map(async (name) => {
        const child = running.get(name)!;
        child.kill("SIGTERM");
        await exitOf(child);
        running.delete(name);
      }),
    );
    for (const name of SERVICES) {
      const image = imageOf(name);
      expect(await runHealthcheck(image.healthcheck, localEnv(name, image)), `${name} HEALTHCHECK once stopped`).not.toBe(0);
    }
  }, 90_000);
});
