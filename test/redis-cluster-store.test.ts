import { connectRedis, CovisitStore, deleteMatching, shardOf, shardTag, type RedisClient } from "@recsys/covisit-store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { privateRedisCluster, redisCli } from "./harness/servers.js";

// covisit's store on a Redis Cluster with every write waiting for a replica (REDIS_WAIT_REPLICAS=1), when a shard's slot moves to
// another node under a client that already knows the cluster: a manual failover turns the shard's primary into its replica's
// replica, as a killed primary becomes once it restarts. The client's map of the slots is then out of date until it reads it again.
let cluster: Awaited<ReturnType<typeof privateRedisCluster>>;
let redis: RedisClient;
/** A client that learnt the slots before the failover and sends nothing until after it: its map is then out of date. */
let stale: RedisClient;
let store: CovisitStore;
const namespace = `rcstore${process.pid}`;
const SHARDS = 6;

/** The port of the primary that serves `slot` now, and of its replica, as the nodes themselves say (CLUSTER SHARDS would too). */
function ownerOf(slot: number, anyPort: number): { primary: number; replica: number } {
  const lines = redisCli(anyPort, "cluster", "nodes").split("\n");
  const node = (l: string) => {
    const [id, addr, flags, master, , , , , ...ranges] = l.split(" ");
    return { id: id!, port: Number(addr!.split(":")[1]!.split("@")[0]), flags: flags!, master: master!, ranges };
  };
  const nodes = lines.map(node);
  const owns = (r: string) => {
    const [lo, hi = lo] = r.split("-").map(Number);
    return slot >= lo! && slot <= hi!;
  };
  const primary = nodes.find((n) => n.flags.includes("master") && n.ranges.some(owns))!;
  const replica = nodes.find((n) => n.master === primary.id)!;
  return { primary: primary.port, replica: replica.port };
}

beforeAll(async () => {
  cluster = await privateRedisCluster(3);
  redis = connectRedis(cluster.url);
  store = new CovisitStore(redis, namespace, 5 * 60_000, undefined, undefined, undefined, undefined, "counts", { shards: SHARDS, waitReplicas: 1 });
  await store.markFirstClick();
  stale = connectRedis(cluster.url);
  await stale.ping();
}, 120_000);
afterAll(async () => {
  if (redis) {
    await deleteMatching(redis, `${namespace}:*`);
    redis.disconnect();
  }
  stale?.disconnect();
  await cluster?.destroy();
});

describe("the co-visit store on a Redis Cluster whose slots moved", () => {
  it("sends a write to the shard's new primary, holds it on that primary's replica, and counts it once", async () => {
    const user = Array.from({ length: 100 }, (_, i) => `user${i}`).find((u) => shardOf(u, SHARDS) === 0)!;
    const [a, b, c] = ["https://e.org/a", "https://e.org/b", "https://e.org/c"];
    const T0 = Date.parse("2024-01-02T00:00:00Z");
    expect(await store.applyClick({ eventId: "e1", userid: user, url: a, eventTimeMs: T0, event: "view" })).toEqual({ status: "applied", pairs: 0 });

    const slot = Number(redisCli(cluster.nodes[0]!.port, "cluster", "keyslot", `{${shardTag(0, SHARDS)}}`));
    const before = ownerOf(slot, cluster.nodes[0]!.port);
    redisCli(before.replica, "cluster", "failover");
    await expect
      .poll(() => redisCli(before.primary, "role").startsWith("slave") && redisCli(before.replica, "role").startsWith("master"), { timeout: 30_000 })
      .toBe(true);
    // Every node agrees on the new owner before the client writes again.
    await expect.poll(() => cluster.nodes.every((n) => ownerOf(slot, n.port).primary === before.replica), { timeout: 30_000 }).toBe(true);

    expect(await store.applyClick({ eventId: "e2", userid: user, url: b, eventTimeMs: T0 + 1_000, event: "view" })).toEqual({ status: "applied", pairs: 1 });
    // Its redelivery is a duplicate: the write that went first was counted, once.
    expect(await store.applyClick({ eventId: "e2", userid: user, url: b, eventTimeMs: T0 + 1_000, event: "view" })).toEqual({ status: "duplicate" });
    expect(await store.applyClick({ eventId: "e3", userid: user, url: c, eventTimeMs: T0 + 2_000, event: "view" })).toEqual({ status: "applied", pairs: 2 });
    expect(await store.coVisitsAfter(a, 10)).toEqual([
      { recommendation: b, frequency: 1 },
      { recommendation: c, frequency: 1 },
    ]);
    // The new primary's replica (the old primary) holds the counts too.
    const key = `${namespace}:recsys:{${shardTag(0, SHARDS)}}:cv:${a}`;
    expect(redisCli(before.primary, "--scan", "--pattern", key)).toBe(key);
  }, 120_000);

  it("deletes every key of a pattern through a client whose map of the slots is out of date (a reset or rebuild after a failover)", async () => {
    // After the case above: shard 0's primary became a replica, and `stale` has not heard of it.
    for (let s = 0; s < SHARDS; s++) await redis.set(`${namespace}:del:{${shardTag(s, SHARDS)}}:k`, "v");
    const keys = () => new Set(cluster.nodes.flatMap((n) => redisCli(n.port, "--scan", "--pattern", `${namespace}:del:*`).split("\n").filter(Boolean)));
    await expect.poll(() => keys().size).toBe(SHARDS);
    expect(await deleteMatching(stale, `${namespace}:del:*`)).toBe(SHARDS);
    await expect.poll(() => keys().size).toBe(0);
  }, 60_000);
});

describe("the co-visit store on a Redis Cluster whose replica lags", () => {
  /** What `f` gives or throws while the replica of `s`'s shard is stopped (SIGSTOP: it takes nothing, acks nothing), well within the node timeout. */
  async function whileReplicaStopped<T>(s: number, f: () => Promise<T>): Promise<{ value?: T; error?: string }> {
    const slot = Number(redisCli(cluster.nodes[0]!.port, "cluster", "keyslot", `{${shardTag(s, SHARDS)}}`));
    const { replica } = ownerOf(slot, cluster.nodes[0]!.port);
    const pid = Number(/process_id:(\d+)/.exec(redisCli(replica, "info", "server"))![1]);
    process.kill(pid, "SIGSTOP");
    try {
      return await f().then(
        (value) => ({ value }),
        (err: unknown) => ({ error: String(err) }),
      );
    } finally {
      process.kill(pid, "SIGCONT");
    }
  }

  it("acknowledges a click, its redelivery through another connection, an erasure and a page's visibility only once the shard's replica holds them", async () => {
    const user = Array.from({ length: 100 }, (_, i) => `lag${i}`).find((u) => shardOf(u, SHARDS) === 1)!;
    const click = { eventId: "l1", userid: user, url: "https://e.org/lag", eventTimeMs: Date.parse("2024-01-02T00:00:00Z"), event: "view" };
    const unreplicated = /reached 0 of 1 Redis replicas/;
    // Applied on the primary, not held by its replica: refused, so the message is redelivered.
    expect((await whileReplicaStopped(1, () => store.applyClick(click))).error).toMatch(unreplicated);
    // The redelivery reaches another covisit (a connection that wrote nothing): it finds the click applied, and must still wait
    // for the replica to hold it before it is acknowledged.
    const other = connectRedis(cluster.url);
    try {
      const second = new CovisitStore(other, namespace, 5 * 60_000, undefined, undefined, undefined, undefined, "counts", { shards: SHARDS, waitReplicas: 1 });
      expect((await whileReplicaStopped(1, () => second.applyClick(click))).error).toMatch(unreplicated);
      expect(await second.applyClick(click)).toEqual({ status: "duplicate" });
    } finally {
      other.disconnect();
    }
    // An erasure and a page hidden: refused while the replica holds neither; acknowledged once it does.
    expect((await whileReplicaStopped(1, () => store.forgetUser(user, 1_000))).error).toMatch(unreplicated);
    expect(await store.forgetUser(user, 1_000)).toBe("duplicate");
    expect((await whileReplicaStopped(1, () => store.applyVisibility("https://e.org/lag", true, 7))).error).toMatch(unreplicated);
    // Its redelivery finds it applied on every primary ("stale"), and held now.
    expect(await store.applyVisibility("https://e.org/lag", true, 7)).toBe("stale");
  }, 120_000);
});
