import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { clicksOf } from "@recsys/bus";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, expectRecommendationsExact, referenceWorkload } from "./harness/oracle.js";
import { referenceCoVisits, type RawClick } from "./harness/reference.js";
import { privateRedis, type PrivateServer } from "./harness/servers.js";
import { natsOf, referenceClicks, startStack, type TestStack } from "./harness/stack.js";
import { loadgen } from "./faults/loadgen.js";

// Every store has a size; a full one refuses instead of losing what it holds.
let stack: TestStack | undefined;
let redisServer: PrivateServer | undefined;
afterEach(async () => {
  await stack?.stop();
  await redisServer?.stop();
  stack = undefined;
  redisServer = undefined;
});

async function healthz(base: string): Promise<{ code: number; body: { status: string; problems?: string[] } }> {
  const res = await fetch(`${base}/healthz`);
  return { code: res.status, body: (await res.json()) as { status: string; problems?: string[] } };
}

async function metricValue(base: string, name: string, labels: string[] = []): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(name) && (l[name.length] === "{" || l[name.length] === " ") && labels.every((label) => l.includes(label)))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

describe("a full CLICKS", () => {
  it("refuses new clicks at ingest with ResourceExhausted, keeps every click it accepted, and says so on a metric and on health", async () => {
    stack = await startStack("clicksfull", { CLICKS_MAX_BYTES: String(64 * 1024) });
    const { ingest } = clientsOf(stack);
    const t0 = Date.parse("2024-01-02T00:00:00Z");
    const accepted: RawClick[] = [];
    let refusal: ConnectError | undefined;
    // Calls of 20 clicks of 20 users, each user's clicks a minute apart, until the stream is full.
    for (let call = 0; call < 1000 && !refusal; call++) {
      const clicks = Array.from({ length: 20 }, (_, u) => ({
        userid: `user${u}`,
        url: `https://example.org/page/${(call * 7 + u * 3) % 40}`,
        eventTime: new Date(t0 + call * 60_000 + u).toISOString(),
        eventId: `c${call}-${u}`,
      }));
      try {
        const res = await ingest.publishClicks({ clicks });
        expect(res.results.every((r) => r.outcome.case === "accepted")).toBe(true);
        accepted.push(...clicks.map((c) => ({ userid: c.userid, url: c.url, event_time: c.eventTime })));
      } catch (err) {
        refusal = ConnectError.from(err);
      }
    }
    expect(refusal?.code).toBe(Code.ResourceExhausted);
    expect(refusal?.rawMessage).toMatch(/^clicks: .*CLICKS is full/);
    expect(accepted.length).toBeGreaterThan(100);

    // Health and the metric say so; ingest still serves.
    const health = await healthz(stack.url.ingest);
    expect(health.code).toBe(200);
    expect(health.body.problems?.join("\n")).toMatch(/CLICKS is full/);
    expect(await metricValue(stack.url.ingest, "recsys_stream_full", ["CLICKS"])).toBe(1);
    expect(await metricValue(stack.url.ingest, "recsys_stream_full_refusals_total", ["CLICKS"])).toBeGreaterThanOrEqual(1);

    // Nothing accepted was dropped: the stream still starts at its first message and holds every
    // accepted click (and perhaps part of the refused call: what went out before the refusal).
    const stored: RawClick[] = [];
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = `${stack.namespace.toUpperCase()}_CLICKS`;
      const info = await jsm.streams.info(stream);
      expect(info.state.first_seq).toBe(1);
      expect(info.config.discard).toBe("new");
      for (let seq = 1; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        for (const k of clicksOf({ data: m!.data, headers: m!.header }))
          stored.push({ userid: k.userid, url: k.url, event_time: new Date(Number(k.eventTimeMs)).toISOString() });
      }
    } finally {
      await nc.close();
    }
    const key = (k: RawClick) => `${k.userid} ${k.url} ${k.event_time}`;
    const storedKeys = new Set(stored.map(key));
    expect(accepted.filter((a) => !storedKeys.has(key(a)))).toEqual([]);
    expect(stored.length).toBeLessThan(accepted.length + 20);

    // And every stored click counts, exactly as the reference SQL counts them.
    const last = await clicksLastSequence(stack);
    const c = clientsOf(stack);
    await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 60_000 }).toBeGreaterThanOrEqual(last);
    const want = await referenceCoVisits(stored);
    for (const url of new Set(stored.map((a) => a.url))) {
      const got = (await c.gateway.recommendation({ url, limit: 1000 })).items.map((i) => ({
        recommendation: i.recommendation,
        frequency: Number(i.frequency),
      }));
      expect(got, url).toEqual(want.get(url) ?? []);
    }
  }, 180_000);
});

describe("a full EMBEDDINGS", () => {
  // The embedder writes a page's embedding (about 1.9 KB at 384 dimensions, a short page about 420 bytes on CONTENT) to
  // EMBEDDINGS, which refuses when full: ingest kept accepting pages, which then waited in the embedder for good.
  it("makes ingest refuse pages with ResourceExhausted naming it, before they are accepted and never embedded", async () => {
    const limit = 64 * 1024;
    stack = await startStack("embeddingsfull", { EMBEDDINGS_MAX_BYTES: String(limit) });
    const { ingest } = clientsOf(stack);
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const embeddings = async () => (await jsm.streams.info(`${stack!.namespace.toUpperCase()}_EMBEDDINGS`).catch(() => undefined))?.state;
      let accepted = 0;
      let refusal: ConnectError | undefined;
      // About 34 embeddings fit in 64 KiB.
      for (let i = 0; i < 80 && !refusal; i++) {
        try {
          await ingest.publishContent({ pages: [{ url: `https://e.org/full/${i}`, title: `page ${i}`, text: "a short page" }] });
          accepted++;
        } catch (err) {
          refusal = ConnectError.from(err);
          break;
        }
        // Embedded, or the embedder found the stream full; then ingest's next reading of its size (every 500 ms).
        await expect
          .poll(async () => {
            const e = await embeddings();
            return (e?.messages ?? 0) >= accepted || (e?.bytes ?? 0) >= limit;
          })
          .toBe(true);
        if (((await embeddings())?.bytes ?? 0) >= limit) await sleep(1_000);
      }
      expect(refusal?.code).toBe(Code.ResourceExhausted);
      expect(refusal?.rawMessage).toMatch(/^pages: .*EMBEDDINGS is full/);
      // At most the one page that found the stream full waits in the embedder.
      expect(accepted - ((await embeddings())?.messages ?? 0)).toBeLessThanOrEqual(1);
      const health = await healthz(stack.url.ingest);
      expect(health.body.problems?.join("\n")).toMatch(/EMBEDDINGS is full/);
    } finally {
      await nc.close();
    }
  }, 120_000);
});

describe("one user's likes and stated interests", () => {
  // ENGAGEMENT (256 MiB) is shared and refuses every event once full: one user's token filled it with 32 KiB interests in about
  // 14 minutes at the gateway's default rate limit; INTEREST_EMBEDDINGS (256 MiB, about 1.8 KB an interest whatever its text)
  // with short ones in about 38 hours, after which no user's stated interest was applied. ingest holds each user to
  // USER_ENGAGEMENT_BUDGET_BYTES (1 MiB) an hour of both.
  const BUDGET = 1024 * 1024;
  it("are refused past the user's hourly budget with ResourceExhausted naming the userid; other users go on; the streams grow by the budget", async () => {
    stack = await startStack("engagement", {});
    const { gateway, ingest } = clientsOf(stack);
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const state = async (name: string) => (await jsm.streams.info(`${stack!.namespace.toUpperCase()}_${name}`)).state;
      /** Bytes in ENGAGEMENT and INTEREST_EMBEDDINGS, once the embedder has published an embedding for each interest accepted. */
      let interestsAccepted = 0;
      const embeddings0 = (await state("INTEREST_EMBEDDINGS")).messages;
      const streamBytes = async () => {
        await expect.poll(async () => (await state("INTEREST_EMBEDDINGS")).messages - embeddings0, { timeout: 60_000 }).toBe(interestsAccepted);
        return (await state("ENGAGEMENT")).bytes + (await state("INTEREST_EMBEDDINGS")).bytes;
      };
      const started = Date.now();
      /** The budget, and what came back of it since the start (1 MiB an hour). */
      const budgetSoFar = () => BUDGET * (1 + (Date.now() - started) / 3_600_000);

      // The longest text an interest may have, through the gateway, as a client would send it.
      const text = (i: number) => `${i} `.padEnd(32 * 1024, "interest ");
      let before = await streamBytes();
      let refusal: ConnectError | undefined;
      let long = 0;
      for (let i = 0; i < 64 && !refusal; i++) {
        try {
          await gateway.addInterest({ interest: { userid: "heavy", text: text(i) } });
          long++;
        } catch (err) {
          refusal = ConnectError.from(err);
        }
      }
      interestsAccepted += long;
      expect(refusal?.code).toBe(Code.ResourceExhausted);
      expect(refusal?.rawMessage).toMatch(/^interest\.userid: over its engagement budget: at most 1048576 bytes .* an hour .*retry in \d+ s$/);
      // The streams hold at most the budget of the user's, and most of it (an embedding is counted before the embedder makes it,
      // from above: its model's name as 64 bytes, say): one more interest would have passed it.
      const heavyLong = (await streamBytes()) - before;
      expect(heavyLong).toBeLessThanOrEqual(budgetSoFar());
      expect(heavyLong + heavyLong / long).toBeGreaterThan(0.95 * BUDGET);

      // The same user's likes share the budget (ingest's own API: each refused item with code 8, naming userid).
      const likes = await ingest.publishLikes({
        likes: Array.from({ length: 400 }, (_, i) => ({ userid: "heavy", pageId: String(i), liked: true, eventId: `h${i}` })),
      });
      const refused = likes.results.filter((r) => r.outcome.case === "rejected");
      expect(refused.length).toBeGreaterThan(200);
      expect(refused.every((r) => r.outcome.case === "rejected" && r.outcome.value.field === "userid" && r.outcome.value.code === Code.ResourceExhausted)).toBe(
        true,
      );
      expect((await streamBytes()) - before).toBeLessThanOrEqual(budgetSoFar());

      // Another user's short interests: each costs its embedding too, so about 500 of 1,000 in one call are accepted, and the
      // streams hold at most the budget of them.
      before = await streamBytes();
      const short = await ingest.publishInterests({ interests: Array.from({ length: 1_000 }, (_, i) => ({ userid: "short", text: `i${i}` })) });
      const shortAccepted = short.results.filter((r) => r.outcome.case === "accepted").length;
      interestsAccepted += shortAccepted;
      const shortBytes = (await streamBytes()) - before;
      expect(shortBytes).toBeLessThanOrEqual(budgetSoFar());
      expect(shortBytes).toBeGreaterThan(0.9 * BUDGET);
      expect(shortAccepted).toBeLessThan(700);

      // Other users' interests and likes are accepted meanwhile.
      await gateway.addInterest({ interest: { userid: "light", text: text(0) } });
      const others = await ingest.publishLikes({ likes: [{ userid: "light", pageId: "42", liked: true, eventId: "l1" }] });
      expect(others.results[0]?.outcome.case).toBe("accepted");
    } finally {
      await nc.close();
    }
  }, 180_000);
});

describe("Redis at its memory limit", () => {
  it("covisit reports NOT_SERVING and dead-letters nothing; once memory is freed every count equals the reference SQL", async () => {
    const ref = await referenceWorkload();
    redisServer = await privateRedis(["--maxmemory-policy", "noeviction"]);
    const redis = new Redis(redisServer.url);
    try {
      stack = await startStack("redisfull", { REDIS_URL: redisServer.url });
      // Room for a fraction of the reference counts only.
      const used = Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
      await redis.config("SET", "maxmemory", String(used + 2 * 2 ** 20));

      const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "0"]);
      await expect.poll(async () => (await healthz(stack!.url.covisit)).code, { timeout: 60_000, interval: 200 }).toBe(503);
      const health = await healthz(stack.url.covisit);
      expect(health.body.status).toBe("NOT_SERVING");
      expect(health.body.problems?.join("\n")).toMatch(/redis failing since .*OOM/);
      expect(await metricValue(stack.url.covisit, "recsys_dependency_up", ['dependency="redis"'])).toBe(0);
      await replay;
      // Retried with backoff for as long as it lasts, not given up after 10 deliveries.
      await sleep(20_000);
      expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);
      expect((await healthz(stack.url.covisit)).code).toBe(503);

      await redis.config("SET", "maxmemory", "0");
      const last = await clicksLastSequence(stack);
      await expect
        .poll(async () => (await clientsOf(stack!).covisit.progress({})).ackFloorStreamSequence, { timeout: 120_000, interval: 500 })
        .toBeGreaterThanOrEqual(last);
      await expect.poll(async () => (await healthz(stack!.url.covisit)).code, { timeout: 10_000 }).toBe(200);
      expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);
      await expectRecommendationsExact(stack, ref);
    } finally {
      redis.disconnect();
    }
  }, 300_000);
});
