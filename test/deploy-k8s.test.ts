// deploy/k8s has one Deployment and Service per service, probed and addressed on the port the
// service listens on.
import { readdirSync, readFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { CONFIG, deployDir, SERVICES, urlHost, type Yaml } from "./harness/deploy-config.js";
import { repoRoot } from "./harness/stack.js";

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

    for (const key of cfg.addresses)
      expect(
        (c.env ?? []).map((e: Yaml) => e.name),
        `${name} sets ${key}`,
      ).toContain(key);
    for (const e of c.env ?? []) {
      expect(cfg.envNames, `${name} reads ${e.name}`).toContain(e.name);
      const target = typeof e.value === "string" ? urlHost(e.value) : undefined;
      if (target && SERVICES.includes(target.host)) {
        const other = k8sDocs(join(k8sDir, `${target.host}.yaml`)).find((d) => d.kind === "Service");
        expect(
          other.spec.ports.map((p: Yaml) => p.port),
          `${name} ${e.name}`,
        ).toContain(target.port);
      }
      if (e.name === "HOST") expect(e.value).toBe("0.0.0.0");
    }
  });
});
