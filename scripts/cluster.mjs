#!/usr/bin/env node
// pnpm cluster:up|down|status: the stack on the distributed forms of its servers, on this machine, on free ports of its own (the
// machine's NATS, Redis and PostgreSQL are left alone): a JetStream cluster of three nats-server processes (every stream on three,
// STREAM_REPLICAS=3), a Redis Cluster of three primaries with a replica each (covisit's counts in 6 shards), PostgreSQL with a streaming replica (profile's queries and the gateways' SimilarContent
// read it), two replicas of ingest, covisit, embedder, profile and analytics, the archive, and one gateway per replica set. `up` ends
// by printing one line per entry point ("gateway http://127.0.0.1:PORT", …) on stdout; `down` stops everything and deletes its data.
// State, data and logs in RECSYS_CLUSTER_DIR (default <repo>/.cluster).
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { serviceArgs } from "./service-command.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = process.env.RECSYS_CLUSTER_DIR ?? join(root, ".cluster");
const stateFile = join(dir, "cluster.json");
const logDir = join(dir, "logs");
const dataDir = join(dir, "data");
const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
/** Two of each, one gateway per set: a client round-robins over the gateways (or puts a proxy of its own in front). */
const REPLICATED = ["ingest", "covisit", "embedder", "profile", "analytics"];
const PORT_VAR = {
  ingest: "INGEST_PORT",
  covisit: "COVISIT_PORT",
  embedder: "EMBEDDER_PORT",
  profile: "PROFILE_PORT",
  analytics: "ANALYTICS_PORT",
  archive: "ARCHIVE_PORT",
  gateway: "GATEWAY_PORT",
};

const say = (msg) => process.stderr.write(`cluster: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Ports handed out by this run: a port closed after the check may be handed out again by the next one (they run at once). */
const handedOut = new Set();

async function freePort() {
  for (;;) {
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

async function listening(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1");
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

async function waitFor(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} after ${timeoutMs / 1000} s; logs in ${logDir}`);
    await sleep(200);
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A background process whose output goes to its log; its pid. */
function start(name, command, args, env = process.env) {
  const log = openSync(join(logDir, `${name}.log`), "a");
  const child = spawn(command, args, { detached: true, stdio: ["ignore", log, log], env });
  child.unref();
  return child.pid;
}

/** PostgreSQL's tools, as the postgres user when run as root (the server refuses to run as root). */
function postgresTool(tool, args) {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", join(PG_BIN, tool), ...args]] : [join(PG_BIN, tool), args];
  execFileSync(cmd, argv, { stdio: "pipe", cwd: "/" });
}

const readState = () => (existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, "utf8")) : undefined);
const writeState = (state) => writeFileSync(stateFile, JSON.stringify(state, null, 2));

async function natsCluster(state) {
  const nodes = await Promise.all([1, 2, 3].map(async (i) => ({ name: `nats-${i}`, port: await freePort(), routePort: await freePort() })));
  const routes = nodes.map((n) => `nats://127.0.0.1:${n.routePort}`).join(",");
  for (const n of nodes) {
    const store = join(dataDir, n.name);
    mkdirSync(store, { recursive: true });
    const args = ["-a", "127.0.0.1", "-p", String(n.port), "-js", "-sd", store, "-n", n.name, "--cluster_name", "recsys"];
    n.pid = start(n.name, "nats-server", [...args, "--cluster", `nats://127.0.0.1:${n.routePort}`, "--routes", routes]);
    state.processes.push({ name: n.name, pid: n.pid, port: n.port });
    writeState(state);
  }
  for (const n of nodes) await waitFor(`${n.name} not listening`, () => listening(n.port));
  const servers = nodes.map((n) => `nats://127.0.0.1:${n.port}`);
  // Streams can be created once the three have elected a JetStream meta leader.
  const nc = await connect({ servers });
  try {
    await waitFor("no JetStream meta leader", () =>
      jetstreamManager(nc)
        .then((jsm) => jsm.getAccountInfo())
        .then(
          () => true,
          () => false,
        ),
    );
  } finally {
    await nc.close();
  }
  return servers.join(",");
}

/** A Redis Cluster: three primaries with a replica each, joined by redis-cli --cluster create. Returns the nodes, comma-separated. */
async function redisCluster(state) {
  const ports = [];
  for (let i = 1; i <= 6; i++) {
    const port = await freePort();
    const name = `redis-${i}`;
    const data = join(dataDir, name);
    mkdirSync(data, { recursive: true });
    const pid = start(name, "redis-server", [
      ...["--port", String(port), "--bind", "127.0.0.1", "--dir", data, "--appendonly", "yes", "--save", ""],
      ...["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
      ...["--maxmemory-policy", "noeviction"],
    ]);
    state.processes.push({ name, pid, port });
    writeState(state);
    ports.push(port);
  }
  for (const port of ports) await waitFor(`redis :${port} not listening`, () => listening(port));
  execFileSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "1", "--cluster-yes"], {
    stdio: "ignore",
    timeout: 60_000,
  });
  const clusterOk = (port) => {
    try {
      return execFileSync("redis-cli", ["-p", String(port), "cluster", "info"], { encoding: "utf8", timeout: 5_000 }).includes("cluster_state:ok");
    } catch {
      return false;
    }
  };
  await waitFor("the Redis Cluster not ok", async () => ports.every(clusterOk));
  return ports.map((p) => `redis://127.0.0.1:${p}`).join(",");
}

async function postgresWithReplica(state) {
  const primary = await freePort();
  const replica = await freePort();
  mkdirSync(dataDir, { recursive: true });
  chmodSync(dir, 0o755);
  chmodSync(dataDir, 0o777);
  const pgDir = (name) => join(dataDir, name);
  const startServer = async (name, port) => {
    const options = `-p ${port} -k ${pgDir(name)} -c listen_addresses=127.0.0.1`;
    postgresTool("pg_ctl", ["-D", join(pgDir(name), "data"), "-o", options, "-l", join(pgDir(name), "server.log"), "-w", "start"]);
    state.postgres.push({ name, data: join(pgDir(name), "data"), port });
    writeState(state);
    await waitFor(`${name} not listening`, () => listening(port));
  };
  for (const name of ["postgres", "postgres-replica"]) {
    mkdirSync(pgDir(name), { recursive: true });
    chmodSync(pgDir(name), 0o777);
  }
  postgresTool("initdb", ["-D", join(pgDir("postgres"), "data"), "-A", "trust", "-U", "postgres"]);
  await startServer("postgres", primary);
  const url = `postgresql://postgres@127.0.0.1:${primary}/postgres`;
  // What a superuser does once where deployed (deploy/postgres/init-roles.sh): the vector extension.
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("CREATE EXTENSION IF NOT EXISTS vector");
  await client.end();
  // The replica: a base backup of the primary, standby.signal and the primary's address written (-R), replaying from then on.
  postgresTool("pg_basebackup", [
    "-h",
    "127.0.0.1",
    "-p",
    String(primary),
    "-U",
    "postgres",
    "-D",
    join(pgDir("postgres-replica"), "data"),
    "-R",
    "-X",
    "stream",
  ]);
  await startServer("postgres-replica", replica);
  return { primary: url, replica: `postgresql://postgres@127.0.0.1:${replica}/postgres` };
}

async function healthy(url) {
  try {
    return (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok;
  } catch {
    return false;
  }
}

async function up() {
  const existing = readState();
  if (existing?.processes.some((p) => alive(p.pid))) throw new Error(`a cluster is up already (${stateFile}): pnpm cluster:down first`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const state = { processes: [], postgres: [], endpoints: [] };
  writeState(state);
  for (const service of [...REPLICATED, "archive", "gateway"]) {
    if (!existsSync(join(root, "services", service, "dist/main.js"))) throw new Error(`services/${service}/dist/main.js is missing: run pnpm build first`);
  }
  say("starting NATS (3 servers), a Redis Cluster (3 primaries, 3 replicas) and PostgreSQL with a replica");
  const natsUrl = await natsCluster(state);
  const redisUrl = await redisCluster(state);
  const postgres = await postgresWithReplica(state);
  const common = {
    ...process.env,
    HOST: "127.0.0.1",
    NATS_URL: natsUrl,
    STREAM_REPLICAS: "3",
    REDIS_URL: redisUrl,
    // covisit's counts in 6 shards, two on each primary, each write on a replica before its clicks are acked.
    COVISIT_SHARDS: "6",
    REDIS_WAIT_REPLICAS: "1",
    DATABASE_URL: postgres.primary,
    RECSYS_NAMESPACE: "",
    ARCHIVE_DIR: join(dataDir, "archive"),
  };
  // Ports first: each replica set's gateway points at its own set.
  const sets = await Promise.all(
    [1, 2].map(async () => Object.fromEntries(await Promise.all([...REPLICATED, "gateway"].map(async (s) => [s, await freePort()])))),
  );
  const archivePort = await freePort();
  const url = (port) => `http://127.0.0.1:${port}`;
  const services = [];
  // ingest first in each set: it creates the streams the others wait for.
  for (const [k, ports] of sets.entries()) {
    for (const s of REPLICATED) {
      const env = { ...common, [PORT_VAR[s]]: String(ports[s]) };
      if (s === "profile") env.READ_DATABASE_URL = postgres.replica;
      services.push({ name: `${s}-${k + 1}`, service: s, port: ports[s], env });
    }
  }
  services.push({ name: "archive-1", service: "archive", port: archivePort, env: { ...common, ARCHIVE_PORT: String(archivePort) } });
  for (const [k, ports] of sets.entries()) {
    services.push({
      name: `gateway-${k + 1}`,
      service: "gateway",
      port: ports.gateway,
      env: {
        ...common,
        GATEWAY_PORT: String(ports.gateway),
        INGEST_URL: url(ports.ingest),
        COVISIT_URL: url(ports.covisit),
        EMBEDDER_URL: url(ports.embedder),
        PROFILE_URL: url(ports.profile),
        ANALYTICS_URL: url(ports.analytics),
        // SimilarContent from the replica profile's queries read, where erasures and hidings are fenced.
        DATABASE_URL: postgres.replica,
      },
    });
  }
  say(`starting ${services.length} service processes`);
  const launch = (s) => {
    const pid = start(s.name, process.execPath, serviceArgs(root, s.service), s.env);
    state.processes.push({ name: s.name, pid, port: s.port, health: url(s.port) });
    writeState(state);
  };
  const ready = (s) => {
    const p = state.processes.find((x) => x.name === s.name);
    return waitFor(
      `${s.name} not healthy`,
      async () => {
        if (!alive(p.pid)) throw new Error(`${s.name} exited; see ${join(logDir, `${s.name}.log`)}`);
        return healthy(url(s.port));
      },
      120_000,
    );
  };
  // The first ingest creates the streams (each a replicated group to elect) before the others ask for them.
  launch(services[0]);
  await ready(services[0]);
  for (const s of services.slice(1)) launch(s);
  for (const s of services.slice(1)) await ready(s);
  state.endpoints = [
    ...services.filter((s) => s.service === "gateway").map((s) => `gateway ${url(s.port)}`),
    ...services.filter((s) => s.service !== "gateway").map((s) => `${s.service} ${url(s.port)}`),
    `nats ${natsUrl}`,
    `redis ${redisUrl}`,
    `postgres ${postgres.primary}`,
    `postgres-replica ${postgres.replica}`,
  ];
  writeState(state);
  say("up; entry points:");
  for (const line of state.endpoints) console.log(line);
}

async function stopProcess(p) {
  if (!alive(p.pid)) return;
  process.kill(p.pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (alive(p.pid) && Date.now() < deadline) await sleep(100);
  if (alive(p.pid)) process.kill(p.pid, "SIGKILL");
}

async function down() {
  const state = readState();
  if (!state) {
    say(`nothing to stop (no ${stateFile})`);
    return;
  }
  await stopAll(state);
  rmSync(dir, { recursive: true, force: true });
  say("stopped, and its data deleted");
}

async function stopAll(state) {
  // Services first (in reverse), then the servers they use.
  const services = state.processes.filter((p) => p.health).reverse();
  await Promise.all(services.map(stopProcess));
  for (const p of state.processes.filter((x) => !x.health).reverse()) await stopProcess(p);
  for (const p of [...state.postgres].reverse()) {
    try {
      postgresTool("pg_ctl", ["-D", p.data, "-m", "fast", "-w", "stop"]);
    } catch {
      // not running
    }
  }
}

async function status() {
  const state = readState();
  if (!state) {
    say("not up");
    process.exitCode = 1;
    return;
  }
  let down = 0;
  for (const p of state.processes) {
    const up = alive(p.pid) && (p.health ? await healthy(p.health) : await listening(p.port));
    if (!up) down++;
    console.log(`${p.name.padEnd(14)} pid ${String(p.pid).padEnd(8)} port ${String(p.port).padEnd(6)} ${up ? (p.health ? "healthy" : "up") : "down"}`);
  }
  for (const p of state.postgres) {
    const up = await listening(p.port);
    if (!up) down++;
    console.log(`${p.name.padEnd(14)} ${"".padEnd(12)} port ${String(p.port).padEnd(6)} ${up ? "up" : "down"}`);
  }
  if (down > 0) process.exitCode = 1;
}

const commands = { up, down, status };
const cmd = commands[process.argv[2]];
if (!cmd) {
  console.error(`usage: cluster.mjs ${Object.keys(commands).join("|")}`);
  process.exit(2);
}
cmd().catch(async (err) => {
  console.error(`cluster: ${err.message}`);
  // An `up` that failed half-way stops what it started, and keeps its logs and data to look at (the next `up` deletes them).
  const state = cmd === up ? readState() : undefined;
  if (state) await stopAll(state).catch((e) => console.error(`cluster: stopping what was started: ${e.message}`));
  process.exit(1);
});
