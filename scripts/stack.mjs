#!/usr/bin/env node
// Runs the services of this repo as background processes on this machine: up|down [service ...], reset, status (see README.md).
// reset starts again the services it stopped: covisit sets its Redis marker and profile makes its schema only when they start.
// Pid files and logs are kept in RECSYS_STACK_DIR (default <repo>/.stack), so a test can run a stack of its own beside a user's.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { serviceArgs } from "./service-command.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stackDir = process.env.RECSYS_STACK_DIR ?? join(root, ".stack");
const pidDir = join(stackDir, "pids");
const logDir = join(stackDir, "logs");
/** The local stack's archive (services/archive): Parquet files by hour, and their commit log. */
const archiveDir = process.env.ARCHIVE_DIR ?? join(stackDir, "archive");

/** Start order matters only for the first health wait: backends before the gateway. */
export const SERVICES = [
  { name: "ingest", portVar: "INGEST_PORT", port: 50051 },
  { name: "covisit", portVar: "COVISIT_PORT", port: 50052 },
  { name: "embedder", portVar: "EMBEDDER_PORT", port: 50053 },
  { name: "profile", portVar: "PROFILE_PORT", port: 50054 },
  { name: "analytics", portVar: "ANALYTICS_PORT", port: 50055 },
  { name: "archive", portVar: "ARCHIVE_PORT", port: 50056 },
  { name: "gateway", portVar: "GATEWAY_PORT", port: 8080 },
];

const portOf = (s) => Number(process.env[s.portVar] ?? s.port);
const pidFile = (s) => join(pidDir, `${s.name}.pid`);
const logFile = (s) => join(logDir, `${s.name}.log`);

function runningPid(s) {
  if (!existsSync(pidFile(s))) return undefined;
  const pid = Number(readFileSync(pidFile(s), "utf8"));
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

async function healthy(s) {
  try {
    const res = await fetch(`http://127.0.0.1:${portOf(s)}/healthz`, { signal: AbortSignal.timeout(1_000) });
    return res.ok;
  } catch {
    return false;
  }
}

/** The services named on the command line, or all of them. */
function chosen(names) {
  if (names.length === 0) return SERVICES;
  const unknown = names.filter((n) => !SERVICES.some((s) => s.name === n));
  if (unknown.length) throw new Error(`no service ${unknown.join(", ")}; there are ${SERVICES.map((s) => s.name).join(", ")}`);
  return SERVICES.filter((s) => names.includes(s.name));
}

async function up(names) {
  execFileSync("bash", [join(root, "scripts/infra.sh"), "up"], { stdio: "inherit" });
  mkdirSync(pidDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  for (const s of chosen(names)) {
    const args = serviceArgs(root, s.name);
    const main = args[args.length - 1];
    if (!existsSync(main)) throw new Error(`${main} is missing: run pnpm build first`);
    const pid = runningPid(s);
    if (pid) {
      console.error(`stack: ${s.name} already running (pid ${pid})`);
      continue;
    }
    const log = openSync(logFile(s), "a");
    // The local stack listens on loopback, where the gateway may run without credentials; set HOST
    // (and credentials: README, Security) to serve others.
    const env = { HOST: "127.0.0.1", ARCHIVE_DIR: archiveDir, ...process.env };
    const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", log, log], env });
    writeFileSync(pidFile(s), String(child.pid));
    child.unref();
    console.error(`stack: started ${s.name} (pid ${child.pid}, port ${portOf(s)}, log ${logFile(s)})`);
  }
  const deadline = Date.now() + 60_000;
  for (const s of chosen(names)) {
    while (!(await healthy(s))) {
      if (!runningPid(s)) throw new Error(`${s.name} exited; see ${logFile(s)}`);
      if (Date.now() > deadline) throw new Error(`${s.name} not healthy after 60 s; see ${logFile(s)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  console.error("stack: all services healthy");
}

async function down(names) {
  for (const s of [...chosen(names)].reverse()) {
    const pid = runningPid(s);
    if (!pid) {
      rmSync(pidFile(s), { force: true });
      continue;
    }
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (runningPid(s) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (runningPid(s)) process.kill(pid, "SIGKILL");
    rmSync(pidFile(s), { force: true });
    console.error(`stack: stopped ${s.name}`);
  }
}

async function status() {
  for (const s of SERVICES) {
    const pid = runningPid(s);
    console.log(`${s.name.padEnd(9)} ${pid ? `pid ${pid}` : "stopped"}  port ${portOf(s)}  ${(await healthy(s)) ? "healthy" : "not healthy"}`);
  }
}

async function reset() {
  const running = SERVICES.filter((s) => runningPid(s)).map((s) => s.name);
  if (running.length) {
    console.error(`stack: stopping ${running.join(", ")} for the reset, to start them again after it`);
    await down(running);
  }
  const { resetNamespace } = await import("./reset.mjs");
  try {
    await resetNamespace(process.env.RECSYS_NAMESPACE ?? "");
    // The archive's stream sequences belong to the streams just deleted.
    rmSync(archiveDir, { recursive: true, force: true });
  } catch (err) {
    // Left stopped: on partly deleted data covisit and profile would refuse work.
    throw new Error(`${err.message}${running.length ? `; ${running.join(", ")} stay stopped (pnpm stack:up starts them)` : ""}`);
  }
  console.error("stack: streams, Redis keys, tables and archive of this project deleted");
  if (running.length) await up(running);
}

const commands = { up, down, status, reset };
const cmd = commands[process.argv[2]];
if (!cmd) {
  console.error(`usage: stack.mjs ${Object.keys(commands).join("|")} [service ...]`);
  process.exit(2);
}
cmd(process.argv.slice(3)).catch((err) => {
  console.error(`stack: ${err.message}`);
  process.exit(1);
});
