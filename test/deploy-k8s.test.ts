// deploy/k8s has one Deployment and Service per service, probed and addressed on the port the
// service listens on.
import { readdirSync, readFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { CONFIG, deployDir, SERVICES, urlHost, type Yaml } from "./harness/deploy-config.js";
import { repoRoot } from "./harness/stack.js";

const k8sDir = join(deployDir, "k8s");
const POLICIES = "network-policies";
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
  it("has one manifest per service and the network policies, and none for anything else", () => {
    const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f));
    expect(files.map((f) => basename(f).replace(/\.ya?ml$/, "")).sort()).toEqual([...SERVICES, POLICIES].sort());
  });

  it.each(SERVICES)("%s: a Deployment probed on /healthz at its port, non-root, with resources; a Service to that port", (name) => {
    const cfg = CONFIG[name]!;
    const docs = k8sDocs(join(k8sDir, `${name}.yaml`));
    // Besides, the claims of the volumes its pod mounts (the archive's), and the disruption budget of a replicated one.
    expect(
      docs
        .map((d) => d.kind)
        .filter((k) => k !== "PersistentVolumeClaim" && k !== "PodDisruptionBudget")
        .sort(),
    ).toEqual(["Deployment", "Service"]);
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
    // Every claim is mounted, writable by the pod's group; a service writing files keeps them on one.
    for (const claim of docs.filter((d) => d.kind === "PersistentVolumeClaim")) {
      const volume = (pod.volumes ?? []).find((v: Yaml) => v.persistentVolumeClaim?.claimName === claim.metadata.name);
      expect(volume, `volume of ${claim.metadata.name}`).toBeDefined();
      expect(c.volumeMounts.map((m: Yaml) => m.name)).toContain(volume.name);
      expect(pod.securityContext?.fsGroup, "fsGroup").toBe(pod.securityContext?.runAsGroup);
    }
    if (cfg.envNames.has("ARCHIVE_DIR")) {
      const dir = (c.env ?? []).find((e: Yaml) => e.name === "ARCHIVE_DIR")?.value;
      expect(dir, "ARCHIVE_DIR").toBeDefined();
      const mount = c.volumeMounts?.find((m: Yaml) => m.mountPath === dir);
      expect(pod.volumes.find((v: Yaml) => v.name === mount?.name)?.persistentVolumeClaim, "a claim mounted at ARCHIVE_DIR").toBeDefined();
      expect(deployment.spec.strategy?.type, "one pod at a time on the volume").toBe("Recreate");
    }

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

  it("runs two replicas of each service but the archive, on different nodes where it can, one kept up through a voluntary disruption", () => {
    for (const name of SERVICES) {
      const docs = k8sDocs(join(k8sDir, `${name}.yaml`));
      const d = docs.find((x) => x.kind === "Deployment");
      const pdb = docs.find((x) => x.kind === "PodDisruptionBudget");
      if (name === "archive") {
        // One writer of its volume (ReadWriteOnce, Recreate): a budget of one would block every drain.
        expect(d.spec.replicas, name).toBe(1);
        expect(pdb, name).toBeUndefined();
        continue;
      }
      expect(d.spec.replicas, name).toBe(2);
      const term = d.spec.template.spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm;
      expect(term?.topologyKey, name).toBe("kubernetes.io/hostname");
      expect(term?.labelSelector?.matchLabels, name).toEqual({ "app.kubernetes.io/name": name });
      expect(pdb?.spec.minAvailable, name).toBe(1);
      expect(pdb?.spec.selector.matchLabels, name).toEqual(d.spec.selector.matchLabels);
    }
  });

  it("keeps every stream on three NATS servers: every service that talks to NATS says STREAM_REPLICAS 3", () => {
    const replicas: Record<string, string | undefined> = {};
    for (const name of SERVICES) {
      const d = k8sDocs(join(k8sDir, `${name}.yaml`)).find((x) => x.kind === "Deployment");
      for (const c of d.spec.template.spec.containers) {
        const env = Object.fromEntries((c.env ?? []).map((e: Yaml) => [e.name, e.value]));
        if ("NATS_URL" in env) replicas[name] = env.STREAM_REPLICAS;
      }
    }
    expect(replicas).toEqual({ ingest: "3", covisit: "3", embedder: "3", profile: "3", analytics: "3", archive: "3" });
  });

  it("reads the counts on a Redis Cluster as covisit keeps them: same shards in covisit and the gateway, covisit's writes on a replica", () => {
    const redisEnv: Record<string, Record<string, string | undefined>> = {};
    for (const name of SERVICES) {
      const d = k8sDocs(join(k8sDir, `${name}.yaml`)).find((x) => x.kind === "Deployment");
      for (const c of d.spec.template.spec.containers) {
        const env = Object.fromEntries((c.env ?? []).map((e: Yaml) => [e.name, e.value]));
        if ("REDIS_URL" in env)
          redisEnv[name] = { REDIS_CLUSTER: env.REDIS_CLUSTER, COVISIT_SHARDS: env.COVISIT_SHARDS, REDIS_WAIT_REPLICAS: env.REDIS_WAIT_REPLICAS };
      }
    }
    expect(redisEnv).toEqual({
      covisit: { REDIS_CLUSTER: "true", COVISIT_SHARDS: "6", REDIS_WAIT_REPLICAS: "1" },
      gateway: { REDIS_CLUSTER: "true", COVISIT_SHARDS: "6", REDIS_WAIT_REPLICAS: undefined },
    });
  });

  it("refers to every Secret as required: a pod without its credentials does not start", () => {
    const refs: Array<{ where: string; optional: unknown }> = [];
    for (const name of SERVICES) {
      for (const d of k8sDocs(join(k8sDir, `${name}.yaml`)).filter((d) => d.kind === "Deployment")) {
        for (const c of d.spec.template.spec.containers) {
          for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) refs.push({ where: `${name} ${e.name}`, optional: e.valueFrom.secretKeyRef.optional });
          for (const f of c.envFrom ?? []) if (f.secretRef) refs.push({ where: `${name} envFrom ${f.secretRef.name}`, optional: f.secretRef.optional });
        }
        for (const v of d.spec.template.spec.volumes ?? []) if (v.secret) refs.push({ where: `${name} volume ${v.name}`, optional: v.secret.optional });
      }
    }
    expect(refs.map((r) => r.where)).toEqual(
      expect.arrayContaining([
        "covisit NATS_PASSWORD",
        "covisit REDIS_URL",
        "profile DATABASE_URL",
        "profile MIGRATION_DATABASE_URL",
        "gateway DATABASE_URL",
        "analytics NATS_PASSWORD",
        "analytics DATABASE_URL",
        "analytics MIGRATION_DATABASE_URL",
      ]),
    );
    for (const r of refs) expect(r.optional, r.where).toBe(false);
  });

  describe("network policies", () => {
    const policies = () => k8sDocs(join(k8sDir, `${POLICIES}.yaml`));
    const nameOf = (selector: Yaml): string | undefined => selector?.matchLabels?.["app.kubernetes.io/name"];
    // The data flow: who connects to whom, on the port the callee listens on.
    const INFRA: Record<string, number> = { nats: 4222, redis: 6379, postgres: 5432 };
    const portOf = (name: string) => CONFIG[name]?.port ?? INFRA[name]!;
    const EDGES = [
      ...["ingest", "covisit", "embedder", "profile", "analytics"].map((to) => ["gateway", to]),
      ...["ingest", "covisit", "embedder", "profile", "analytics", "archive"].map((from) => [from, "nats"]),
      ["covisit", "redis"],
      // The gateway's shared rate limits.
      ["gateway", "redis"],
      ["profile", "postgres"],
      ["analytics", "postgres"],
      // SimilarContent, read from profile's tables.
      ["gateway", "postgres"],
    ]
      .map(([from, to]) => `${from} -> ${to}:${portOf(to!)}`)
      // The NATS cluster's routes between its servers; the Redis Cluster's replication and bus between its nodes.
      .concat("nats -> nats:6222", "redis -> redis:6379", "redis -> redis:16379");

    it("deny everything to and from every pod of the namespace unless a policy allows it", () => {
      const denying = policies().filter(
        (p) => p.kind === "NetworkPolicy" && Object.keys(p.spec.podSelector ?? {}).length === 0 && !p.spec.ingress && !p.spec.egress,
      );
      expect(denying).toHaveLength(1);
      expect(denying[0].spec.policyTypes.sort()).toEqual(["Egress", "Ingress"]);
    });

    it("allow exactly the edges of the data flow, each on both of its ends, plus DNS for every pod and clients to the gateway", () => {
      const egress = new Set<string>();
      const ingress = new Set<string>();
      let dns = false;
      let public_: string[] = [];
      for (const p of policies()) {
        expect(p.kind).toBe("NetworkPolicy");
        const self = nameOf(p.spec.podSelector);
        for (const rule of p.spec.egress ?? []) {
          const ports = (rule.ports ?? []).map((x: Yaml) => `${x.protocol ?? "TCP"}/${x.port}`);
          if (!self) {
            // Only name resolution is allowed to every pod.
            expect(ports.sort()).toEqual(["TCP/53", "UDP/53"]);
            dns = rule.to.every((t: Yaml) => t.podSelector?.matchLabels?.["k8s-app"] === "kube-dns");
            continue;
          }
          expect(rule.to?.length, `${p.metadata.name}: egress to named pods only`).toBeGreaterThan(0);
          for (const t of rule.to) for (const port of rule.ports) egress.add(`${self} -> ${nameOf(t.podSelector)}:${port.port}`);
        }
        for (const rule of p.spec.ingress ?? []) {
          expect(self, `${p.metadata.name}: ingress to named pods only`).toBeDefined();
          if (!rule.from) {
            public_ = [...public_, ...rule.ports.map((x: Yaml) => `${self}:${x.port}`)];
            continue;
          }
          for (const f of rule.from) for (const port of rule.ports) ingress.add(`${nameOf(f.podSelector)} -> ${self}:${port.port}`);
        }
      }
      expect([...egress].sort()).toEqual([...EDGES].sort());
      expect([...ingress].sort()).toEqual([...EDGES].sort());
      expect(public_).toEqual([`gateway:${CONFIG.gateway!.port}`]);
      expect(dns).toBe(true);
    });

    it("select the pods by the labels their Deployments give them", () => {
      const selected = new Set(
        policies()
          .map((p) => nameOf(p.spec.podSelector))
          .filter(Boolean),
      );
      for (const name of SERVICES) {
        expect(selected, name).toContain(name);
        const d = k8sDocs(join(k8sDir, `${name}.yaml`)).find((x) => x.kind === "Deployment");
        expect(d.spec.template.metadata.labels["app.kubernetes.io/name"]).toBe(name);
      }
    });
  });
});
