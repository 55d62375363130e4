import { shardTag } from "@recsys/covisit-store";
import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "../harness/clients.js";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { privateRedisCluster, redisCli, type RedisClusterNode } from "../harness/servers.js";
import { referenceClicks, referencePages, startStack, type TestStack } from "../harness/stack.js";
import { loadgen, timeline } from "./loadgen.js";

// The stack on a Redis Cluster of three primaries with a replica each (six redis-server processes joined by redis-cli --cluster
// create), covisit's counts in 6 shards (COVISIT_SHARDS) and every write waiting for its replica (REDIS_WAIT_REPLICAS=1), as
// `pnpm cluster:up` and the deploy files run it. During a replay of the reference clicks a primary is killed (SIGKILL): its replica
// takes its slots, covisit's writes meanwhile fail and come again, and at the end every Recommendation equals the reference SQL.
let cluster: Awaited<ReturnType<typeof privateRedisCluster>>;
let stack: TestStack;
let ref: ReferenceWorkload;
let admin: Cluster;
const events: string[] = [];

beforeAll(async () => {
  ref = await referenceWorkload();
  cluster = await privateRedisCluster(3);
  stack = await startStack(
    "rediscluster",
    { REDIS_URL: cluster.url, COVISIT_SHARDS: "6", REDIS_WAIT_REPLICAS: "1" },
    { services: ["ingest", "covisit", "embedder", "profile", "gateway"] },
  );
  admin = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })));
}, 180_000);
afterAll(async () => {
  console.info(`events:\n  ${events.join("\n  ")}`);
  admin?.disconnect();
  try {
    await stack?.stop();
  } finally {
    await cluster?.destroy();
  }
});

/** Each node's own view: its role and replication link, and the cluster's nodes as it sees them. */
function clusterViews(): string[] {
  return cluster.nodes.map(({ port }) => {
    const run = (...args: string[]) => {
      try {
        return redisCli(port, ...args);
      } catch (err) {
        return `(${String(err).split("\n")[0]})`;
      }
    };
    const replication = run("info", "replication")
      .split("\n")
      .filter((l) => /^(role|master_port|master_link_status|master_sync_in_progress|connected_slaves|slave\d+):/.test(l))
      .map((l) => l.trim())
      .join(" ");
    return `:${port} ${replication}\n    ${run("cluster", "nodes").replaceAll("\n", "\n    ")}`;
  });
}

describe("covisit on a Redis Cluster (3 primaries, 3 replicas)", () => {
  it("spreads the counts over every primary, loses one mid-replay (SIGKILL), and ends exact with nothing dead-lettered", async () => {
    const pages = await loadgen(stack, ["content", referencePages, "--rate", "0", "--wait"]);
    expect(pages).toMatchObject({ accepted: 2596, pagesStored: 2596 });
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "3000"]);
    let killed: RedisClusterNode | undefined;
    await timeline([
      [
        2_500,
        async () => {
          const before = cluster.primaries();
          // The primary holding shard 0's slot: it has counts by now.
          const owner = await admin.cluster("SLOTS");
          const slot = Number(await admin.cluster("KEYSLOT", `${stack.namespace}:recsys:{${shardTag(0, 6)}}:x`));
          const port = owner.find(([lo, hi]) => slot >= lo && slot <= hi)?.[2]?.[1] ?? 0;
          killed = cluster.nodes.find((n) => n.port === port)!;
          expect(before.has(port), `CLUSTER SLOTS names a primary for slot ${slot}`).toBe(true);
          await killed.kill();
          const killedAt = Date.now();
          events.push(`primary :${port} (shard 0's slot ${slot}) killed (SIGKILL)`);
          // Its replica is promoted once the others agree it failed (cluster-node-timeout 5 s).
          await expect
            .poll(
              () => {
                const now = cluster.primaries();
                return now.size === 3 && !now.has(port);
              },
              { timeout: 60_000, interval: 200 },
            )
            .toBe(true);
          events.push(`its replica promoted ${Date.now() - killedAt} ms after the kill`);
          // Until the new primary has a replica, covisit's writes to its shards cannot be made safe (REDIS_WAIT_REPLICAS=1) and wait.
          // The killed node comes back as its replica, as an orchestrator replaces a lost pod.
          await killed.start();
          events.push(`:${port} restarted ${Date.now() - killedAt} ms after the kill`);
          let health = "";
          try {
            await expect
              .poll(
                async () => {
                  const res = await fetch(`${stack.url.covisit}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch((err: unknown) => {
                    const exit = stack.process("covisit")?.exitCode;
                    health = `unreachable (${String(err)}${exit === null || exit === undefined ? "" : `, exited with ${exit}`})`;
                    throw err;
                  });
                  health = `${res.status} ${await res.text()}`;
                  return res.ok;
                },
                { timeout: 60_000, interval: 200 },
              )
              .toBe(true);
          } catch (err) {
            // What covisit said last, and each node's view of the cluster: what was still down.
            events.push(
              `covisit not healthy ${Date.now() - killedAt} ms after the kill: ${health}`,
              ...clusterViews(),
              `:${port}'s log:\n    ${killed.log().replaceAll("\n", "\n    ")}`,
            );
            throw err;
          }
          events.push(`covisit healthy ${Date.now() - killedAt} ms after the kill`);
        },
      ],
    ]);
    const summary = await replay;
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0 });
    await waitApplied(stack, ref.pages.length);
    expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);

    // Every primary holds two of the 6 shards' counts.
    const counts = [...cluster.primaries()].map(
      (port) => redisCli(port, "--scan", "--pattern", `${stack.namespace}:recsys:*cv:*`).split("\n").filter(Boolean).length,
    );
    events.push(`co-visit keys per primary: ${counts.join(", ")}`);
    expect(counts.length).toBe(3);
    for (const n of counts) expect(n).toBeGreaterThan(0);

    await expectRecommendationsExact(stack, ref);
    // With a userid too: the user's recent pages live in their own shard, the counts in all.
    const { gateway } = clientsOf(stack);
    const user = ref.clicks[0]!.userid;
    const recent = new Set((await clientsOf(stack).covisit.recentPages({ userid: user })).urls);
    expect(recent.size).toBeGreaterThan(0);
    const url = ref.urls.find((u) => (ref.coVisits.get(u) ?? []).some((c) => recent.has(c.recommendation)))!;
    const want = (ref.coVisits.get(url) ?? []).filter((c) => !recent.has(c.recommendation)).slice(0, 5);
    const got = (await gateway.recommendation({ url, limit: 5, userid: user })).items.map((i) => ({
      recommendation: i.recommendation,
      frequency: Number(i.frequency),
    }));
    expect(got).toEqual(want);
    await expectSimilarContentExact(stack, ref);
  }, 400_000);
});
