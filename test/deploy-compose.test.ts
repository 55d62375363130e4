// deploy/compose.yaml runs what the services need and sets what they read, in an order their
// health checks allow.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { compose, composeEnv, CONFIG, dependsOn, deployDir, imageOf, requiredComposeVars, SERVICES, urlHost, type Yaml } from "./harness/deploy-config.js";
import { repoRoot } from "./harness/stack.js";

const INFRA = ["nats", "redis", "postgres"];

/** The container side of a compose `ports` entry. */
function containerPort(entry: string | number | { target: number }): number {
  if (typeof entry === "object") return Number(entry.target);
  return Number(String(entry).split("/")[0]!.split(":").at(-1));
}

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
    expect(
      Object.keys(services)
        .filter((s) => !INFRA.includes(s))
        .sort(),
    ).toEqual([...SERVICES].sort());
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

  it("gives every service credentials of its own: a NATS user each, covisit's Redis user, the two PostgreSQL roles of profile and analytics", () => {
    const { services } = compose();
    const natsConf = readFileSync(join(deployDir, "nats/nats.conf"), "utf8");
    const natsUsers = [...natsConf.matchAll(/^\s*user: (\S+)\n\s*password: \$(\w+)$/gm)].map((m) => ({ user: m[1]!, passwordVar: m[2]! }));
    expect(services.nats.command.join(" ")).toMatch(/-c \S+/);
    expect(services.nats.volumes.some((v: string) => v.startsWith("./nats/nats.conf:"))).toBe(true);
    for (const { passwordVar } of natsUsers) expect(Object.keys(services.nats.environment), `nats gets ${passwordVar}`).toContain(passwordVar);
    for (const name of SERVICES) {
      const raw = services[name].environment ?? {};
      if (!("NATS_URL" in raw)) continue;
      expect(raw.NATS_USER, name).toBe(name);
      const user = natsUsers.find((u) => u.user === name);
      expect(user, `deploy/nats/nats.conf has a user ${name}`).toBeDefined();
      expect(raw.NATS_PASSWORD, name).toMatch(new RegExp(`^\\$\\{${user!.passwordVar}:\\?`));
    }
    expect(new URL(composeEnv(services.covisit).REDIS_URL!).username).toBe("covisit");
    expect(services.redis.command).toContain("--requirepass");
    expect(new URL(composeEnv(services.profile).DATABASE_URL!).username).toBe("recsys_runtime");
    expect(new URL(composeEnv(services.profile).MIGRATION_DATABASE_URL!).username).toBe("recsys_migration");
    expect(new URL(composeEnv(services.analytics).DATABASE_URL!).username).toBe("recsys_runtime");
    expect(new URL(composeEnv(services.analytics).MIGRATION_DATABASE_URL!).username).toBe("recsys_migration");
  });

  it("takes every password from deploy/.env, which deploy/compose-secrets.sh generates once and keeps", () => {
    const dir = mkdtempSync(join(tmpdir(), "recsys-secrets-"));
    try {
      copyFileSync(join(deployDir, "compose-secrets.sh"), join(dir, "compose-secrets.sh"));
      const read = () =>
        Object.fromEntries(
          readFileSync(join(dir, ".env"), "utf8")
            .trim()
            .split("\n")
            .map((l) => l.split("=") as [string, string]),
        );
      execFileSync("bash", [join(dir, "compose-secrets.sh")], { stdio: "pipe" });
      const first = read();
      // Every variable compose refuses to start without, each a fresh random password.
      expect(Object.keys(first).sort()).toEqual(requiredComposeVars());
      // Each starts with a letter: nats-server reads a password starting with a digit as a number.
      for (const value of Object.values(first)) expect(value).toMatch(/^p[0-9a-f]{32}$/);
      expect(new Set(Object.values(first)).size).toBe(Object.keys(first).length);
      expect(statSync(join(dir, ".env")).mode & 0o777).toBe(0o600);
      execFileSync("bash", [join(dir, "compose-secrets.sh")], { stdio: "pipe" });
      expect(read()).toEqual(first);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
