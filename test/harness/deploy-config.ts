// Shared by the deploy test files, which check that the deploy files agree with the services they
// deploy: what each service's own configuration says, and what its Dockerfile and the compose file say.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { parse } from "yaml";
import { repoRoot } from "./stack.js";

/** Parsed YAML, checked field by field by the tests. */
export type Yaml = any;

export const servicesDir = join(repoRoot, "services");
export const deployDir = join(repoRoot, "deploy");
export const SERVICES = readdirSync(servicesDir).filter((n) => existsSync(join(servicesDir, n, "package.json")));

// ---------- what the services themselves say ----------

export interface ServiceConfig {
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
  // A service's settings are in its main.ts, or in a config.ts beside it that more than one entry point reads.
  const configFile = join(servicesDir, name, "src/config.ts");
  const main = readFileSync(join(servicesDir, name, "src/main.ts"), "utf8") + (existsSync(configFile) ? readFileSync(configFile, "utf8") : "");
  const ports = [...main.matchAll(/\b([A-Z][A-Z0-9_]*_PORT): port\((\d+)\)/g)];
  if (ports.length !== 1) throw new Error(`services/${name}/src/main.ts (and config.ts): expected one *_PORT: port(N), found ${ports.length}`);
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
export const CONFIG = Object.fromEntries(SERVICES.map((s) => [s, configOf(s)])) as Record<string, ServiceConfig>;

// ---------- Dockerfiles ----------

export interface Instruction {
  op: string;
  args: string;
}
export interface Stage {
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

export const all = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op);
export const last = (stage: Stage, op: string) => all(stage, op).at(-1);

export function envOf(stage: Stage): Record<string, string> {
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

export interface Image {
  stages: Stage[];
  final: Stage;
  workdir: string;
  env: Record<string, string>;
  cmd: string[];
  healthcheck: string[];
}

export function imageOf(name: string): Image {
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

/** A path inside the image, as the same path in the repository. */
export function toRepo(service: string, image: Image, path: string): string {
  const abs = posix.resolve(image.workdir, path);
  const rel = posix.relative(image.workdir, abs);
  if (rel.startsWith("..")) throw new Error(`${path} is outside the image's WORKDIR ${image.workdir}`);
  return join(servicesDir, service, rel);
}

// ---------- compose ----------

const composeFile = join(deployDir, "compose.yaml");
export const compose = (): Yaml => parse(readFileSync(composeFile, "utf8"));

/**
 * Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` interpolation, with `vars` (by default
 * none: an unset variable is its default, or empty).
 */
const interpolate = (value: string, vars: Record<string, string> = {}) =>
  value
    .replace(/\$\{(\w+)(?::?([-?])([^}]*))?\}/g, (_, name: string, op: string | undefined, arg: string | undefined) => vars[name] ?? (op === "-" ? arg! : ""))
    .replace(/\$\$/g, "$");

/** The variables compose refuses to start without (`${VAR:?error}`): the generated passwords. */
export function requiredComposeVars(): string[] {
  const text = readFileSync(composeFile, "utf8");
  return [...new Set([...text.matchAll(/\$\{(\w+):\?[^}]*\}/g)].map((m) => m[1]!))].sort();
}

/** The arguments of compose's redis-server that set its users (and eviction policy), with these passwords. */
export function composeRedisAuthArgs(vars: Record<string, string>): string[] {
  const command: string[] = compose().services.redis.command;
  const kept: string[] = [];
  let keep = false;
  for (const arg of command.slice(1).map((a) => interpolate(a, vars))) {
    if (arg.startsWith("--")) keep = ["--user", "--requirepass", "--maxmemory-policy"].includes(arg);
    if (keep) kept.push(arg);
  }
  return kept;
}

/** A service's compose environment, with `vars` as deploy/.env would give them. */
export function composeEnv(service: Yaml, vars: Record<string, string> = {}): Record<string, string> {
  const env = service.environment ?? {};
  const pairs: [string, string][] = Array.isArray(env)
    ? env.map((e: string) => [e.split("=")[0]!, e.slice(e.indexOf("=") + 1)])
    : Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v, vars)]));
}

export const dependsOn = (service: Yaml): Record<string, { condition?: string }> =>
  Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((d: string) => [d, {}])) : (service.depends_on ?? {});

/** The host and port a URL names; nothing for a value that is not a URL. */
export function urlHost(value: string): { host: string; port: number } | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return undefined;
  const u = new URL(value);
  return { host: u.hostname, port: Number(u.port) };
}
