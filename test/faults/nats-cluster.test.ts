import { natsServers, Topology } from "@recsys/bus";
import { jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "../harness/clients.js";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { privateNatsCluster, privateRedis, type ClusterNode, type PrivateServer } from "../harness/servers.js";
import { referenceClicks, referencePages, startStack, type TestStack } from "../harness/stack.js";
import { loadgen, timeline } from "./loadgen.js";

// The stack on a JetStream cluster of three nats-server processes (routes on free ports), every stream with three replicas
// (STREAM_REPLICAS=3) and every service given the three servers (NATS_URL, comma-separated). During a replay of the reference
// clicks the server leading CLICKS is killed (SIGKILL): its streams' other replicas elect a leader, clients move to another
// server, and at the end every count is exact and nothing was dead-lettered. Production settings otherwise.
let cluster: Awaited<ReturnType<typeof privateNatsCluster>>;
let redis: PrivateServer;
let stack: TestStack;
let ref: ReferenceWorkload;
let nc: NatsConnection;
const events: string[] = [];

beforeAll(async () => {
  ref = await referenceWorkload();
  [cluster, redis] = await Promise.all([privateNatsCluster(3), privateRedis()]);
  stack = await startStack(
    "natscluster",
    { NATS_URL: cluster.url, REDIS_URL: redis.url, STREAM_REPLICAS: "3" },
    {
      services: ["ingest", "covisit", "embedder", "profile", "gateway"],
    },
  );
  nc = await connect({ servers: natsServers(cluster.url) });
}, 180_000);
afterAll(async () => {
  console.info(`events:\n  ${events.join("\n  ")}`);
  await nc?.close();
  try {
    await stack?.stop();
  } finally {
    await Promise.all([cluster?.destroy(), redis?.destroy()]);
  }
});

const streamInfo = async (name: string): Promise<StreamInfo> => (await jetstreamManager(nc)).streams.info(name);

describe("a 3-node JetStream cluster", () => {
  it("keeps every stream on three servers", async () => {
    const t = new Topology(stack.namespace);
    for (const name of [
      t.clicksStream,
      t.contentStream,
      t.embeddingsStream,
      t.engagementStream,
      t.interestEmbeddingsStream,
      t.visibilityStream,
      t.deadLetterStream,
      t.clickMetricsStream,
    ]) {
      const info = await streamInfo(name);
      expect(info.config.num_replicas, name).toBe(3);
      expect(info.cluster?.leader, name).toBeTruthy();
      expect(info.cluster?.replicas?.length, name).toBe(2);
    }
  });

  it("loses the server leading CLICKS mid-replay (SIGKILL), fails over, and ends exact with nothing dead-lettered", async () => {
    const pages = await loadgen(stack, ["content", referencePages, "--rate", "0", "--wait"]);
    expect(pages).toMatchObject({ accepted: 2596, pagesStored: 2596 });
    const clicks = new Topology(stack.namespace).clicksStream;
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "3000"]);
    let killed: ClusterNode | undefined;
    await timeline([
      [
        2_000,
        async () => {
          const leader = (await streamInfo(clicks)).cluster?.leader;
          killed = cluster.nodes.find((n) => n.name === leader);
          expect(killed, `CLICKS' leader ${leader} is one of the cluster's servers`).toBeDefined();
          await killed!.kill();
          const killedAt = Date.now();
          events.push(`${killed!.name}, leader of CLICKS, killed (SIGKILL)`);
          // A new leader among the two left, asked of those two (this test's own connection may have been to the one killed).
          const survivors = await connect({ servers: cluster.nodes.filter((n) => n !== killed).map((n) => n.url) });
          // No API check at creation: the cluster may have lost its meta leader with the server, and the poll below waits for it.
          const jsm = await jetstreamManager(survivors, { timeout: 1_000, checkAPI: false });
          let newLeader: string | undefined;
          try {
            await expect
              .poll(
                async () => {
                  newLeader = await jsm.streams.info(clicks).then(
                    (i) => i.cluster?.leader,
                    () => undefined,
                  );
                  return newLeader !== undefined && newLeader !== killed!.name;
                },
                { timeout: 30_000, interval: 50 },
              )
              .toBe(true);
          } finally {
            await survivors.close();
          }
          events.push(`CLICKS led by ${newLeader} ${Date.now() - killedAt} ms after the kill`);
          await expect.poll(async () => (await fetch(`${stack.url.ingest}/healthz`)).ok, { timeout: 30_000, interval: 100 }).toBe(true);
          events.push(`ingest healthy ${Date.now() - killedAt} ms after the kill`);
        },
      ],
    ]);
    const summary = await replay;
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0 });
    events.push(`replay: loadgen retried ${String(summary.retries)} calls`);
    await waitApplied(stack, ref.pages.length);

    // Every click is stored on both servers left, and none was dead-lettered.
    const info = await streamInfo(clicks);
    expect(info.cluster?.replicas?.filter((r) => r.current).length, "CLICKS' replicas on the servers left, caught up").toBe(1);
    expect((await streamInfo(new Topology(stack.namespace).deadLetterStream)).state.messages).toBe(0);
    expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);
    await expectRecommendationsExact(stack, ref);
    await expectSimilarContentExact(stack, ref);

    // The killed server comes back and catches up.
    await killed!.start();
    const back = Date.now();
    await expect.poll(async () => (await streamInfo(clicks)).cluster?.replicas?.filter((r) => r.current).length, { timeout: 60_000, interval: 250 }).toBe(2);
    events.push(`${killed!.name} restarted, CLICKS' replica current again after ${Date.now() - back} ms`);
  }, 400_000);
});
