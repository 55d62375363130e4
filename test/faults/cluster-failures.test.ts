import { natsServers, Topology } from "@recsys/bus";
import { shardTag } from "@recsys/covisit-store";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "../harness/clients.js";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { privateNatsCluster, privateRedisCluster, redisCli } from "../harness/servers.js";
import { referenceClicks, referencePages, startStack, type Replica, type TestStack } from "../harness/stack.js";
import { crashAndRestart, loadgen, timeline } from "./loadgen.js";

// Everything distributed at once, as `pnpm cluster:up` runs it: a JetStream cluster of three servers (every stream on three), a
// Redis Cluster of three primaries with a replica each (covisit's counts in 6 shards, each write on a replica before its ack),
// two replicas of ingest, covisit, embedder and profile. During a replay of the reference clicks: the NATS server leading CLICKS,
// the Redis primary of shard 0 and one replica of each service are killed (SIGKILL). At the end every Recommendation equals the
// reference SQL, every SimilarContent its recomputation, nothing is dead-lettered, and the events say how long each failover took.
let nats: Awaited<ReturnType<typeof privateNatsCluster>>;
let redis: Awaited<ReturnType<typeof privateRedisCluster>>;
let stack: TestStack;
let ref: ReferenceWorkload;
let nc: NatsConnection;
const replicas: Partial<Record<"covisit" | "embedder" | "profile", Replica>> = {};
const events: string[] = [];

beforeAll(async () => {
  ref = await referenceWorkload();
  [nats, redis] = await Promise.all([privateNatsCluster(3), privateRedisCluster(3)]);
  stack = await startStack(
    "clusterfailures",
    { NATS_URL: nats.url, STREAM_REPLICAS: "3", REDIS_URL: redis.url, COVISIT_SHARDS: "6", REDIS_WAIT_REPLICAS: "1" },
    { services: ["ingest", "covisit", "embedder", "profile", "gateway"] },
  );
  for (const service of ["covisit", "embedder", "profile"] as const) replicas[service] = await stack.addReplica(service);
  await stack.addReplica("ingest");
  nc = await connect({ servers: natsServers(nats.url) });
}, 240_000);
afterAll(async () => {
  console.info(`events:\n  ${events.join("\n  ")}`);
  await nc?.close();
  try {
    await stack?.stop();
  } finally {
    await Promise.all([nats?.destroy(), redis?.destroy()]);
  }
});

const poll = { timeout: 60_000, interval: 200 };

describe("the stack on a NATS cluster and a Redis Cluster, with two replicas of each service", () => {
  it("loses a NATS server, a Redis primary and a replica of each service mid-replay (SIGKILL), and ends exact", async () => {
    const pages = await loadgen(stack, ["content", referencePages, "--rate", "0", "--wait"]);
    expect(pages).toMatchObject({ accepted: 2596, pagesStored: 2596 });
    const clicks = new Topology(stack.namespace).clicksStream;
    // 1,000 clicks/s: the replay lasts about 20 s, so that every kill falls within it.
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "1000"]);
    const t0 = Date.now();
    const at = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    await timeline([
      [
        2_000,
        async () => {
          const leader = (await (await jetstreamManager(nc)).streams.info(clicks)).cluster?.leader;
          const node = nats.nodes.find((n) => n.name === leader)!;
          expect(node, `CLICKS' leader ${leader}`).toBeDefined();
          await node.kill();
          const killedAt = Date.now();
          events.push(`${at()}: NATS ${node.name}, leader of CLICKS, killed`);
          const survivors = await connect({ servers: nats.nodes.filter((n) => n !== node).map((n) => n.url) });
          const jsm = await jetstreamManager(survivors, { timeout: 1_000, checkAPI: false });
          try {
            await expect
              .poll(
                async () =>
                  jsm.streams.info(clicks).then(
                    (i) => i.cluster?.leader !== undefined && i.cluster.leader !== node.name,
                    () => false,
                  ),
                poll,
              )
              .toBe(true);
          } finally {
            await survivors.close();
          }
          events.push(`${at()}: CLICKS has a new leader, ${Date.now() - killedAt} ms after the kill`);
        },
      ],
      [
        4_000,
        async () => {
          const slot = redisCli(redis.nodes[0]!.port, "cluster", "keyslot", `{${shardTag(0, 6)}}`);
          // The primary serving shard 0's slot: the one that counts keys in it (its marker at least).
          const port = [...redis.primaries()].find((p) => redisCli(p, "cluster", "countkeysinslot", slot) !== "0");
          expect(port, `a primary holds shard 0's keys (slot ${slot})`).toBeDefined();
          const node = redis.nodes.find((n) => n.port === port)!;
          await node.kill();
          const killedAt = Date.now();
          events.push(`${at()}: Redis primary :${port} (shard 0) killed`);
          await expect.poll(() => redis.primaries().size === 3 && !redis.primaries().has(port!), poll).toBe(true);
          events.push(`${at()}: its replica promoted, ${Date.now() - killedAt} ms after the kill`);
          // Back as the new primary's replica, as an orchestrator replaces a lost node: until then shard 0's writes wait for one.
          await node.start();
          events.push(`${at()}: :${port} restarted`);
        },
      ],
      [
        5_000,
        async () => {
          for (const service of ["covisit", "embedder", "profile"] as const) {
            await replicas[service]!.kill();
            events.push(`${at()}: ${service}'s second replica killed (its unacked messages come again after the ack wait)`);
          }
          await crashAndRestart(stack, "ingest", events);
        },
      ],
    ]);
    const summary = await replay;
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0 });
    events.push(`${at()}: replay done, loadgen retried ${String(summary.retries)} calls`);
    await expect.poll(async () => (await fetch(`${stack.url.covisit}/healthz`)).ok, poll).toBe(true);
    await waitApplied(stack, ref.pages.length);
    events.push(`${at()}: every click applied`);

    expect((await (await jetstreamManager(nc)).streams.info(new Topology(stack.namespace).deadLetterStream)).state.messages).toBe(0);
    expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);
    await expectRecommendationsExact(stack, ref);
    await expectSimilarContentExact(stack, ref);
  }, 600_000);
});
