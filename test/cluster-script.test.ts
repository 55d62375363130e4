// pnpm cluster:up|status|down as a user runs them: the stack on a 3-server JetStream cluster, a Redis Cluster (3 primaries, 3
// replicas) and PostgreSQL with a replica,
// two replicas of each service and a gateway per replica set, on free ports of its own; what one gateway takes, the other answers.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "./harness/stack.js";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "recsys-cluster-"));
const env = { ...process.env, RECSYS_CLUSTER_DIR: dir };
const cluster = (cmd: string) => run(process.execPath, [join(repoRoot, "scripts/cluster.mjs"), cmd], { env, timeout: 240_000 });
let endpoints: Array<[string, string]>;
let pids: number[];

beforeAll(async () => {
  const { stdout } = await cluster("up").catch((err: { stderr?: string }) => {
    throw new Error(`cluster:up failed: ${String(err.stderr ?? err).slice(-3000)}`);
  });
  endpoints = stdout
    .trim()
    .split("\n")
    .map((l) => l.split(" ") as [string, string]);
  pids = (JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as { processes: Array<{ pid: number }> }).processes.map((p) => p.pid);
}, 300_000);
afterAll(async () => {
  await cluster("down").catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const all = (name: string) => endpoints.filter(([n]) => n === name).map(([, u]) => u);
async function call(gateway: string, method: string, body: unknown) {
  const res = await fetch(`${gateway}/recsys.gateway.v1.GatewayService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status, `${method} at ${gateway}`).toBe(200);
  return res.json();
}

describe("pnpm cluster:up", () => {
  it("prints one line per entry point: two gateways, two of each replicated service, the archive and the servers", async () => {
    expect(all("gateway")).toHaveLength(2);
    for (const s of ["ingest", "covisit", "embedder", "profile", "analytics"]) expect(all(s), s).toHaveLength(2);
    expect(all("archive")).toHaveLength(1);
    expect(all("nats")[0]!.split(",")).toHaveLength(3);
    for (const [name, u] of endpoints.filter(([, u]) => u.startsWith("http"))) {
      expect((await fetch(`${u}/healthz`)).status, `${name} ${u}`).toBe(200);
    }
    const nc = await connect({ servers: all("nats")[0]!.split(",") });
    try {
      expect((await (await jetstreamManager(nc)).streams.info("CLICKS")).config.num_replicas).toBe(3);
    } finally {
      await nc.close();
    }
  });

  it("serves from one state: what goes in through one gateway is recommended through the other", async () => {
    const [one, two] = all("gateway") as [string, string];
    const a = "https://example.org/cluster/a";
    const b = "https://example.org/cluster/b";
    await call(one, "Content", { event: { url: a, id: "1", title: "Clusters", text: "Servers that share a stream" } });
    await call(one, "Content", { event: { url: b, id: "2", title: "Replicas", text: "Copies of a stream on other servers" } });
    await call(one, "Clickstream", { event: { userid: "c1", url: a } });
    await call(one, "Clickstream", { event: { userid: "c1", url: b } });
    await expect
      .poll(
        async () => ((await call(two, "Recommendation", { url: a })) as { items?: Array<{ recommendation: string }> }).items?.map((i) => i.recommendation),
        {
          timeout: 60_000,
          interval: 250,
        },
      )
      .toEqual([b]);
    await expect
      .poll(
        async () =>
          ((await call(two, "SimilarContent", { userid: "c1", includeSeen: true })) as { items?: Array<{ similarity?: number }> }).items?.some(
            (i) => (i.similarity ?? 0) > 0,
          ),
        { timeout: 60_000, interval: 250 },
      )
      .toBe(true);
  });

  it("status lists every process up; down stops them all and deletes the data", async () => {
    const { stdout } = await cluster("status");
    expect(stdout).not.toMatch(/ down$/m);
    expect(stdout.trim().split("\n").length).toBeGreaterThanOrEqual(pids.length);
    await cluster("down");
    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive).toEqual([]);
    await expect(cluster("status")).rejects.toThrow();
  });
});
