import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, posix, relative, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../scripts/reset.mjs";
import { freePort, repoRoot } from "./harness/stack.js";

// The deploy files must agree with the services they deploy: the ports in their config, the
// variables they read, and the command each image runs, which is run here outside Docker.

/** Parsed YAML, checked field by field by the tests. */
type Yaml = any;

const servicesDir = join(repoRoot, "services");
const deployDir = join(repoRoot, "deploy");
const SERVICES = readdirSync(servicesDir).filter((n) => existsSync(join(servicesDir, n, "package.json")));
const INFRA = ["nats", "redis", "postgres"];

// ---------- what the services themselves say ----------

interface ServiceConfig {
  packageName: string;
  portVar: string;
  port: number;
  /** Every variable the service's configuration or a shared package reads. */
  envNames: Set<string>;
  /** Addresses of other servers the service uses whose defaults are loopback: inside a container they must be set. */
  addresses: string[];
}

const upperKeys = (src: string) => [...src.matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!);
const loopbackUrlKeys = (src: string) => [...src.matchAll(/^\s+([A-Z][A-Z0-9_]*):.*\.default\("[a-z]+:\/\/[^"]*127\.0\.0\.1/gm)].map((m) => m[1]!);
const configSource = readFileSync(join(repoRoot, "packages/config/src/index.ts"), "utf8");

/** Variables every service reads: the shared config schema and direct reads in packages/. */
const sharedEnvNames = (() => {
  const names = new Set(upperKeys(configSource));
  for (const pkg of readdirSync(join(repoRoot, "packages"))) {
    const src = join(repoRoot, "packages", pkg, "src");
    if (!existsSync(src)) continue;
    for (const f of readdirSync(src, { recursive: true, encoding: "utf8" })) {
      if (!f.endsWith(".ts") || f.endsWith(".test.ts") || f.includes("gen/")) continue;
      for (const m of readFileSync(join(src, f), "utf8").matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)) names.add(m[1]!);
    }
  }
  return names;
})();

function configOf(name: string): ServiceConfig {
  const main = readFileSync(join(servicesDir, name, "src/main.ts"), "utf8");
  const ports = [...main.matchAll(/\b([A-Z][A-Z0-9_]*_PORT): port\((\d+)\)/g)];
  if (ports.length !== 1) throw new Error(`services/${name}/src/main.ts: expected one *_PORT: port(N), found ${ports.length}`);
  const packageName = JSON.parse(readFileSync(join(servicesDir, name, "package.json"), "utf8")).name as string;
  const used = new Set([...main.matchAll(/\bconfig\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!));
  return {
    packageName,
    portVar: ports[0]![1]!,
    port: Number(ports[0]![2]),
    envNames: new Set([...sharedEnvNames, ...upperKeys(main)]),
    addresses: [...new Set([...loopbackUrlKeys(configSource), ...loopbackUrlKeys(main)])].filter((k) => used.has(k)).sort(),
  };
}
const CONFIG = Object.fromEntries(SERVICES.map((s) => [s, configOf(s)])) as Record<string, ServiceConfig>;

// ---------- Dockerfiles ----------

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

/** Stages of a Dockerfile: comments dropped, continuation lines joined. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    if (full) logical.push(full);
  }
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, op, args] = /^(\S+)\s*(.*)$/s.exec(line)!;
    const instr = { op: op!.toUpperCase(), args: args! };
    if (instr.op === "FROM") {
      const [, image, name] = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instr.args)!;
      stages.push({ image: image!, name, instructions: [] });
    } else {
      stages.at(-1)!.instructions.push(instr);
    }
  }
  return stages;
}

const all = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op);
const last = (stage: Stage, op: string) => all(stage, op).at(-1);

function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of all(stage, "ENV")) {
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
      env[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
    }
  }
  return env;
}

function execForm(args: string, what: string): string[] {
  if (!args.startsWith("[")) throw new Error(`${what} is not in exec form (a JSON array): ${args}`);
  return JSON.parse(args) as string[];
}

interface Image {
  stages: Stage[];
  final: Stage;
  workdir: string;
  env: Record<string, string>;
  cmd: string[];
  healthcheck: string[];
}

function imageOf(name: string): Image {
  const stages = parseDockerfile(readFileSync(join(servicesDir, name, "Dockerfile"), "utf8"));
  const final = stages.at(-1)!;
  const hc = /^(?:--\S+\s+)*CMD\s+(.*)$/s.exec(last(final, "HEALTHCHECK")?.args ?? "");
  const entry = last(final, "ENTRYPOINT");
  const cmd = last(final, "CMD");
  return {
    stages,
    final,
    workdir: last(final, "WORKDIR")?.args ?? "/",
    env: envOf(final),
    cmd: [...(entry ? execForm(entry.args, "ENTRYPOINT") : []), ...(cmd ? execForm(cmd.args, "CMD") : [])],
    healthcheck: hc ? execForm(hc[1]!, "HEALTHCHECK CMD") : [],
  };
}

/** .dockerignore patterns as regular expressions over paths relative to the build context. */
const dockerignore = readFileSync(join(repoRoot, ".dockerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"))
  .map((p) => {
    const body = p
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map((seg) => (seg === "**" ? "(?:.*/)?" : seg.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]") + "/"))
      .join("")
      .replace(/\/$/, "");
    return new RegExp(`^${body}(?:/.*)?$`);
  });
const ignoredByDocker = (path: string) => dockerignore.some((re) => re.test(path));

/** A path inside the image, as the same path in the repository. */
function toRepo(service: string, image: Image, path: string): string {
  const abs = posix.resolve(image.workdir, path);
  const rel = posix.relative(image.workdir, abs);
  if (rel.startsWith("..")) throw new Error(`${path} is outside the image's WORKDIR ${image.workdir}`);
  return join(servicesDir, service, rel);
}

// ---------- compose ----------

const composeFile = join(deployDir, "compose.yaml");
const compose = (): Yaml => parse(readFileSync(composeFile, "utf8"));

/** Compose's `${VAR:-default}` interpolation, for an environment that sets none of them. */
const interpolate = (value: string) => value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, _name, fallback: string | undefined) => fallback ?? "").replace(/\$\$/g, "$");

function composeEnv(service: Yaml): Record<string, string> {
  const env = service.environment ?? {};
  const pairs: [string, string][] = Array.isArray(env)
    ? env.map((e: string) => [e.split("=")[0]!, e.slice(e.indexOf("=") + 1)])
    : Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v)]));
}

const dependsOn = (service: Yaml): Record<string, { condition?: string }> =>
  Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((d: string) => [d, {}])) : (service.depends_on ?? {});

/** The container side of a compose `ports` entry. */
function containerPort(entry: string | number | { target: number }): number {
  if (typeof entry === "object") return Number(entry.target);
  return Number(String(entry).split("/")[0]!.split(":").at(-1));
}

function urlHost(value: string): { host: string; port: number } | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return undefined;
  const u = new URL(value);
  return { host: u.hostname, port: Number(u.port) };
}

// ---------- Kubernetes ----------

const k8sDir = join(deployDir, "k8s");
function k8sDocs(file: string): Yaml[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const d of docs) if (d.errors.length) throw new Error(`${relative(repoRoot, file)}: ${d.errors.map((e) => e.message).join("; ")}`);
  return docs.map((d) => d.toJS()).filter((d) => d !== null);
}

/** A probe's or Service's port, by number or by the container's port name. */
function resolvePort(port: number | string, container: Yaml): number {
  if (typeof port === "number") return port;
  const named = (container.ports ?? []).find((p: Yaml) => p.name === port);
  return named ? Number(named.containerPort) : Number(port);
}

// ---------- running things ----------


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

// =====================================================================================

describe("Dockerfiles", () => {
  it.each(SERVICES)("%s: built with pnpm deploy, run as non-root node:20 on its own port", (name) => {
    const cfg = CONFIG[name]!;
    expect(existsSync(join(servicesDir, name, "Dockerfile")), `services/${name}/Dockerfile`).toBe(true);
    const image = imageOf(name);
    expect(image.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of image.stages) expect(s.image).toBe("node:20-bookworm-slim");

    const build = image.stages.slice(0, -1);
    const runs = build.flatMap((s) => all(s, "RUN").map((i) => i.args));
    expect(runs.some((r) => /\bpnpm\b/.test(r) && /\bdeploy\b/.test(r) && r.includes(`--filter ${cfg.packageName}`) && /--prod\b/.test(r))).toBe(true);
    expect(build.some((s) => envOf(s).ONNXRUNTIME_NODE_INSTALL === "skip")).toBe(true);
    const fromBuild = all(image.final, "COPY").filter((c) => /--from=(\S+)/.test(c.args));
    expect(fromBuild.length).toBeGreaterThan(0);
    for (const c of fromBuild) expect(build.map((s) => s.name)).toContain(/--from=(\S+)/.exec(c.args)![1]);

    const user = last(image.final, "USER")?.args.split(":")[0];
    expect(user).toBeDefined();
    expect(["root", "0"]).not.toContain(user);
    expect(image.env.HOST).toBe("0.0.0.0");
    expect(all(image.final, "EXPOSE").flatMap((e) => e.args.split(/\s+/)).map((p) => Number(p.split("/")[0]))).toEqual([cfg.port]);

    expect(image.healthcheck[0]).toBe("node");
    const script = image.healthcheck.join(" ");
    expect(script).toContain("/healthz");
    const hcPort = /process\.env\.([A-Z0-9_]+)\s*\?\?\s*(\d+)/.exec(script);
    expect(hcPort?.slice(1)).toEqual([cfg.portVar, String(cfg.port)]);

    expect(image.cmd[0]).toBe("node");
    const main = image.cmd.slice(1).find((a) => !a.startsWith("-"));
    expect(main).toBeDefined();
    expect(existsSync(toRepo(name, image, main!)), `${main} in the image is services/${name}/${main} here`).toBe(true);

    // What the final stage takes from the build context must be there and not ignored.
    for (const c of all(image.final, "COPY").filter((i) => !i.args.startsWith("--from"))) {
      const parts = c.args.replace(/^(?:--\S+\s+)*/, "").split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(join(repoRoot, src)), `${src} exists`).toBe(true);
        expect(ignoredByDocker(src), `${src} is in .dockerignore`).toBe(false);
      }
    }
  });

  it("the embedder image holds the model the embedder loads by default", () => {
    const image = imageOf("embedder");
    const copies = all(image.final, "COPY")
      .filter((i) => !i.args.startsWith("--from"))
      .map((i) => i.args.replace(/^(?:--\S+\s+)*/, "").split(/\s+/));
    const model = copies.find((parts) => toRepo("embedder", image, parts.at(-1)!) === join(servicesDir, "embedder/models/default"));
    expect(model, "a COPY into <WORKDIR>/models/default").toBeDefined();
    const src = join(repoRoot, model![0]!);
    expect(existsSync(join(src, "tokenizer.json"))).toBe(true);
    expect(existsSync(join(src, "onnx/model_quantized.onnx"))).toBe(true);
  });

  it(".dockerignore keeps build output and dependencies out, but not the embedder's model", () => {
    for (const p of ["node_modules", "services/covisit/node_modules", "packages/bus/dist", "services/embedder/src/gen", ".git"]) expect(ignoredByDocker(p), p).toBe(true);
    for (const p of ["pnpm-lock.yaml", "services/covisit/src/main.ts", "services/embedder/models/default/onnx/model_quantized.onnx", "proto"]) expect(ignoredByDocker(p), p).toBe(false);
  });
});

describe("deploy/compose.yaml", () => {
  it("runs NATS with JetStream, Redis and PostgreSQL with pgvector, each with a health check", () => {
    const { services } = compose();
    expect(services.nats.command.join(" ")).toMatch(/(^|\s)-js(\s|$)/);
    expect(services.postgres.image).toBe("pgvector/pgvector:pg15");
    expect(services.redis.image).toMatch(/^redis:/);
    for (const s of INFRA) expect(services[s].healthcheck?.test, s).toBeDefined();
  });

  it("builds every service from its own Dockerfile and publishes only the gateway, on its port", () => {
    const { services } = compose();
    expect(Object.keys(services).filter((s) => !INFRA.includes(s)).sort()).toEqual([...SERVICES].sort());
    for (const name of SERVICES) {
      const s = services[name];
      expect(resolve(deployDir, s.build.context)).toBe(repoRoot);
      expect(s.build.dockerfile).toBe(`services/${name}/Dockerfile`);
      for (const e of s.expose ?? []) expect(containerPort(e)).toBe(CONFIG[name]!.port);
    }
    const published = Object.entries(services).filter(([, s]) => (s as Yaml).ports?.length);
    expect(published.map(([n]) => n)).toEqual(["gateway"]);
    expect(services.gateway.ports.map(containerPort)).toEqual([CONFIG.gateway!.port]);
  });

  it("starts a service only after what it depends on is healthy", () => {
    const { services } = compose();
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, spec] of Object.entries(dependsOn(s))) {
        expect(spec.condition, `${name} → ${dep}`).toBe("service_healthy");
        const checked = services[dep]?.healthcheck?.test ?? (SERVICES.includes(dep) ? imageOf(dep).healthcheck : undefined);
        expect(checked?.length, `${dep} has a health check`).toBeGreaterThan(0);
      }
    }
  });

  it("sets every address the service uses and nothing it does not read; each address names a service it waits for, on its port", () => {
    const { services } = compose();
    for (const name of SERVICES) {
      const env = composeEnv(services[name]);
      for (const key of Object.keys(env)) expect(CONFIG[name]!.envNames, `${name} reads ${key}`).toContain(key);
      for (const key of CONFIG[name]!.addresses) expect(Object.keys(env), `${name} sets ${key}`).toContain(key);
      if ("HOST" in env) expect(env.HOST).toBe("0.0.0.0");
      for (const [key, value] of Object.entries(env)) {
        const target = urlHost(value);
        if (!target) continue;
        expect(Object.keys(services), `${name} ${key}=${value}`).toContain(target.host);
        expect(Object.keys(dependsOn(services[name])), `${name} waits for ${target.host}`).toContain(target.host);
        if (SERVICES.includes(target.host)) expect(target.port, `${name} ${key}`).toBe(CONFIG[target.host]!.port);
      }
    }
  });
});

describe("deploy/k8s", () => {
  it("has one manifest per service and none for anything else", () => {
    const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f));
    expect(files.map((f) => basename(f).replace(/\.ya?ml$/, "")).sort()).toEqual([...SERVICES].sort());
  });

  it.each(SERVICES)("%s: a Deployment probed on /healthz at its port, non-root, with resources; a Service to that port", (name) => {
    const cfg = CONFIG[name]!;
    const docs = k8sDocs(join(k8sDir, `${name}.yaml`));
    expect(docs.map((d) => d.kind).sort()).toEqual(["Deployment", "Service"]);
    const deployment = docs.find((d) => d.kind === "Deployment");
    const service = docs.find((d) => d.kind === "Service");
    expect(deployment.metadata.name).toBe(name);
    expect(service.metadata.name).toBe(name);

    const pod = deployment.spec.template.spec;
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(c.ports.map((p: Yaml) => p.containerPort)).toEqual([cfg.port]);
    for (const probe of ["readinessProbe", "livenessProbe"]) expect(c[probe], probe).toBeDefined();
    for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"].filter((p) => c[p])) {
      expect(c[probe].httpGet.path, probe).toBe("/healthz");
      expect(resolvePort(c[probe].httpGet.port, c), probe).toBe(cfg.port);
    }
    for (const kind of ["requests", "limits"]) for (const r of ["cpu", "memory"]) expect(c.resources?.[kind]?.[r], `${kind}.${r}`).toBeDefined();

    expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
    const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
    if (uid !== undefined) expect(uid).not.toBe(0);
    expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);

    const podLabels = deployment.spec.template.metadata.labels;
    expect(deployment.spec.selector.matchLabels).toEqual(expect.objectContaining(service.spec.selector));
    for (const [k, v] of Object.entries(service.spec.selector)) expect(podLabels[k]).toBe(v);
    expect(service.spec.ports.map((p: Yaml) => resolvePort(p.targetPort ?? p.port, c))).toEqual([cfg.port]);
    expect(name === "gateway" ? ["ClusterIP", "LoadBalancer"] : ["ClusterIP"]).toContain(service.spec.type ?? "ClusterIP");

    for (const key of cfg.addresses) expect((c.env ?? []).map((e: Yaml) => e.name), `${name} sets ${key}`).toContain(key);
    for (const e of c.env ?? []) {
      expect(cfg.envNames, `${name} reads ${e.name}`).toContain(e.name);
      const target = typeof e.value === "string" ? urlHost(e.value) : undefined;
      if (target && SERVICES.includes(target.host)) {
        const other = k8sDocs(join(k8sDir, `${target.host}.yaml`)).find((d) => d.kind === "Service");
        expect(other.spec.ports.map((p: Yaml) => p.port), `${name} ${e.name}`).toContain(target.port);
      }
      if (e.name === "HOST") expect(e.value).toBe("0.0.0.0");
    }
  });
});

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
      nats: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      redis: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
      postgres: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
    };
    const logDir = join(repoRoot, "test/artifacts/logs");
    mkdirSync(logDir, { recursive: true });

    /** The container's environment (image ENV, then compose), pointed at this machine. */
    function localEnv(name: string, image: Image): NodeJS.ProcessEnv {
      const env: Record<string, string> = { ...image.env, ...composeEnv(services[name]) };
      for (const [key, value] of Object.entries(env)) {
        if (value === image.workdir || value.startsWith(`${image.workdir}/`)) env[key] = toRepo(name, image, value);
        const target = urlHost(value);
        if (target && target.host in localInfra) env[key] = localInfra[target.host]!;
        else if (target && SERVICES.includes(target.host)) env[key] = `http://127.0.0.1:${ports[target.host]}`;
      }
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
