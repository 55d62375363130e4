// profile's queries and the gateway's SimilarContent on a streaming replica of PostgreSQL (pg_basebackup, on a free port),
// profile's writes on the primary. What must be read as written is: DeleteUser answers only once the replica has replayed the
// erasure (profile acks it after waiting for the replica), so no read after it, on either server, shows the user.
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { privatePostgres, type PrivateServer } from "./harness/servers.js";
import { startStack, type TestStack } from "./harness/stack.js";

let primary: PrivateServer;
let replica: PrivateServer;
let stack: TestStack;
let onReplica: pg.Client;

beforeAll(async () => {
  primary = await privatePostgres();
  // The vector extension, as a superuser creates it where deployed (deploy/postgres/init-roles.sh).
  const admin = new pg.Client({ connectionString: primary.url });
  await admin.connect();
  await admin.query("CREATE EXTENSION IF NOT EXISTS vector");
  await admin.end();
  replica = await privatePostgres({ replicaOf: primary });
  stack = await startStack(
    "pgreplica",
    { DATABASE_URL: primary.url },
    {
      services: ["ingest", "covisit", "embedder", "profile", "gateway"],
      serviceEnv: { profile: { READ_DATABASE_URL: replica.url }, gateway: { DATABASE_URL: replica.url } },
    },
  );
  onReplica = new pg.Client({ connectionString: replica.url });
  await onReplica.connect();
}, 180_000);
afterAll(async () => {
  await onReplica?.end();
  await stack?.stop();
  await Promise.all([replica?.destroy(), primary?.destroy()]);
});

/** The similarities SimilarContent gives the user, through the gateway and from profile (both reading the replica). */
async function similarities(userid: string) {
  const c = clientsOf(stack);
  const [viaGateway, fromProfile] = await Promise.all([
    c.gateway.similarContent({ userid, limit: 3, includeSeen: true }),
    c.profile.similarContent({ userid, limit: 3, includeSeen: true }),
  ]);
  return { gateway: viaGateway.items.map((i) => i.similarity > 0.99), profile: fromProfile.items.map((i) => i.similarity > 0.99) };
}

describe("reads on a streaming replica", () => {
  it("serves profile's queries and the gateway's SimilarContent from the replica, while every write goes to the primary", async () => {
    const c = clientsOf(stack);
    const url = "https://example.org/replica/a";
    await c.ingest.publishContent({ pages: [{ url, id: "1", title: "Replicas", text: "Streaming replication in PostgreSQL" }] });
    await c.ingest.publishClicks({ clicks: [{ userid: "rep1", url }] });
    await expect.poll(() => similarities("rep1"), { timeout: 60_000, interval: 250 }).toEqual({ gateway: [true], profile: [true] });
    // The replica is read-only, and the services have sessions on it.
    expect((await onReplica.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r")).rows[0]!.r).toBe(true);
    const sessions = await onReplica.query("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
    expect(sessions.rowCount).toBeGreaterThan(0);
  });

  it("answers DeleteUser only once the replica has replayed the erasure: no read after it shows the user", async () => {
    const c = clientsOf(stack);
    // The replica stops replaying: the erasure reaches the primary at once, the replica later.
    await onReplica.query("SELECT pg_wal_replay_pause()");
    const t0 = Date.now();
    let answered = false;
    const erasing = c.ingest.deleteUser({ userid: "rep1" }).then((r) => {
      answered = true;
      return r;
    });
    await sleep(1_500);
    expect(answered, "DeleteUser answered while the replica had not replayed the erasure").toBe(false);
    // Reads there still see the user meanwhile.
    expect(await similarities("rep1")).toEqual({ gateway: [true], profile: [true] });
    await onReplica.query("SELECT pg_wal_replay_resume()");
    // Answered as applied: no consumer left pending.
    expect((await erasing).pending).toEqual([]);
    console.info(`DeleteUser answered ${Date.now() - t0} ms after it was asked, the replica paused for the first 1,500`);
    // The first reads after the answer: no interest left (every similarity 0), through the gateway and from profile.
    expect(await similarities("rep1")).toEqual({ gateway: [false], profile: [false] });
  }, 60_000);

  it("answers HidePage only once the replica has replayed the hiding: no SimilarContent after it lists the page", async () => {
    const c = clientsOf(stack);
    const url = "https://example.org/replica/b";
    await c.ingest.publishContent({ pages: [{ url, id: "2", title: "Hidden", text: "A page about to be hidden" }] });
    await c.ingest.publishClicks({ clicks: [{ userid: "rep2", url }] });
    const listed = async () => (await c.gateway.similarContent({ userid: "rep2", limit: 5, includeSeen: true })).items.some((i) => i.url === url);
    await expect.poll(listed, { timeout: 60_000, interval: 250 }).toBe(true);
    await onReplica.query("SELECT pg_wal_replay_pause()");
    let answered = false;
    const hiding = c.ingest.setPageVisibility({ url, hidden: true }).then((r) => {
      answered = true;
      return r;
    });
    await sleep(1_500);
    expect(answered, "HidePage answered while the replica had not replayed the hiding").toBe(false);
    await onReplica.query("SELECT pg_wal_replay_resume()");
    expect((await hiding).pending).toEqual([]);
    expect(await listed()).toBe(false);
  }, 90_000);
});
