// The services with the credentials the deploy files give them: NATS with deploy/nats/nats.conf (a
// user per service) and Redis with compose's users (covisit's limited to its keys), private servers
// on free ports. The stack works with only those rights, and a service's credential cannot do what
// belongs to another: covisit cannot write clicks, no service can purge or delete a stream, and
// covisit's Redis user reaches no other key and no server setting.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, PermissionViolationError } from "@nats-io/transport-node";
import { CovisitStore } from "@recsys/covisit-store";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { composeRedisAuthArgs, deployDir } from "./harness/deploy-config.js";
import { privateNats, privatePostgres, privateRedis, type PrivateServer } from "./harness/servers.js";
import { startStack, type ServiceName, type TestStack } from "./harness/stack.js";

const USERS = ["ingest", "covisit", "embedder", "profile", "analytics", "archive"] as const satisfies readonly ServiceName[];
// As deploy/compose-secrets.sh makes them: nats-server reads a password starting with a digit as a number.
const password = () => `p${randomBytes(16).toString("hex")}`;
const natsPasswords = Object.fromEntries(["admin", ...USERS].map((u) => [u, password()])) as Record<"admin" | (typeof USERS)[number], string>;
const redisPasswords = { REDIS_ADMIN_PASSWORD: password(), REDIS_COVISIT_PASSWORD: password(), REDIS_GATEWAY_PASSWORD: password() };

const archiveDir = mkdtempSync(join(tmpdir(), "recsys-archive-"));
let nats: PrivateServer;
let redis: PrivateServer;
let postgres: PrivateServer;
let stack: TestStack;

/** The permissions violation a request was refused with (nats.js gives it as a RequestError's cause). */
async function refusal(request: Promise<unknown>, what: string): Promise<PermissionViolationError> {
  const err = await request.then(
    () => undefined,
    (e: unknown) => e,
  );
  const violation = err instanceof Error && err.cause instanceof PermissionViolationError ? err.cause : err;
  expect(violation, `${what} is refused`).toBeInstanceOf(PermissionViolationError);
  return violation as PermissionViolationError;
}

/** A NATS connection with one service's credential, as that service makes it. */
const connectAs = (user: (typeof USERS)[number]) => connect({ servers: nats.url, user, pass: natsPasswords[user], inboxPrefix: `_INBOX_${user}` });

beforeAll(async () => {
  // One after the other, so that afterAll stops those that started when one fails to.
  nats = await privateNats({
    config: join(deployDir, "nats/nats.conf"),
    env: Object.fromEntries(Object.entries(natsPasswords).map(([u, p]) => [`NATS_${u.toUpperCase()}_PASSWORD`, p])),
  });
  redis = await privateRedis(composeRedisAuthArgs(redisPasswords));
  postgres = await privatePostgres();
  const redisAddress = redis.url.replace("redis://", "");
  // The subjects in nats.conf are the deployed ones: the default (empty) namespace, on servers of
  // this test alone. The harness itself (its reset at the end) works as the admins.
  stack = await startStack(
    "natsperm",
    {
      RECSYS_NAMESPACE: "",
      NATS_URL: nats.url,
      NATS_USER: "admin",
      NATS_PASSWORD: natsPasswords.admin,
      REDIS_URL: `redis://:${redisPasswords.REDIS_ADMIN_PASSWORD}@${redisAddress}`,
      DATABASE_URL: postgres.url,
    },
    {
      services: [...USERS],
      serviceEnv: {
        ...Object.fromEntries(USERS.map((u) => [u, { NATS_USER: u, NATS_PASSWORD: natsPasswords[u] }])),
        // Its windows emitted 1 s after the last click rather than 10.
        analytics: { NATS_USER: "analytics", NATS_PASSWORD: natsPasswords.analytics, IDLE_EMIT_MS: "1000" },
        // Its files closed 1 s after their first event rather than 30.
        archive: { NATS_USER: "archive", NATS_PASSWORD: natsPasswords.archive, ARCHIVE_DIR: archiveDir, ARCHIVE_MAX_AGE_MS: "1000" },
        covisit: {
          NATS_USER: "covisit",
          NATS_PASSWORD: natsPasswords.covisit,
          REDIS_URL: `redis://covisit:${redisPasswords.REDIS_COVISIT_PASSWORD}@${redisAddress}`,
        },
      },
    },
  );
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await Promise.all([nats, redis, postgres].map((s) => s?.destroy()));
  rmSync(archiveDir, { recursive: true, force: true });
});

describe("NATS users per service (deploy/nats/nats.conf)", () => {
  it("each service does its work with its own user: pages are embedded and stored, clicks counted by covisit, profile and analytics, and archived; a hiding and an erasure applied by each", async () => {
    const c = clientsOf(stack);
    const now = Date.now();
    const pages = ["https://example.org/nats/a", "https://example.org/nats/b"];
    const content = await c.ingest.publishContent({
      pages: pages.map((url, i) => ({ url, id: `${i + 1}`, title: `Page ${i + 1}`, text: `Stream processing with permissions, page ${i + 1}` })),
    });
    expect(content.results.every((r) => r.outcome.case === "accepted")).toBe(true);
    const clicks = await c.ingest.publishClicks({
      clicks: pages.map((url, i) => ({ userid: "u1", url, eventTime: new Date(now - 2_000 + i * 1_000).toISOString() })),
    });
    expect(clicks.results.every((r) => r.outcome.case === "accepted")).toBe(true);

    // covisit consumed CLICKS with its user and counted the pair in Redis with its own.
    await expect
      .poll(async () => (await c.covisit.recommendation({ url: pages[0]! })).items.map((i) => [i.recommendation, Number(i.frequency)]), {
        timeout: 30_000,
        interval: 200,
      })
      .toEqual([[pages[1], 1]]);
    // embedder consumed CONTENT and wrote EMBEDDINGS; profile consumed EMBEDDINGS and CLICKS.
    await expect
      .poll(
        async () =>
          (await c.profile.similarContent({ userid: "u1", limit: 2, includeSeen: true })).items
            .filter((i) => i.similarity > 0)
            .map((i) => i.url)
            .sort(),
        {
          timeout: 60_000,
          interval: 250,
        },
      )
      .toEqual(pages);
    // analytics consumed CLICKS and published the 30 windows of each click to CLICK_METRICS.
    await expect
      .poll(
        async () => {
          const p = await c.analytics.progress({});
          return { rows: p.rows, published: p.publishedBefore !== "" && p.publishedBefore === p.emittedBefore };
        },
        { timeout: 30_000, interval: 250 },
      )
      .toEqual({ rows: 60n, published: true });
    // archive read CLICKS and CONTENT with ordered consumers of its own and closed their files.
    await expect
      .poll(
        async () => Object.fromEntries((await c.archive.progress({})).tables.map((t) => [t.table, [Number(t.rows), t.archivedThrough === t.lastSequence]])),
        { timeout: 30_000, interval: 250 },
      )
      .toEqual({ clicks: [2, true], content: [2, true], engagement: [0, true], erasures: [0, true] });

    // A click later than the lateness: covisit and analytics each file it under its user (dlq.<source>.u…), as their NATS users
    // may, and covisit counts its letters with its own.
    const late = await c.ingest.publishClicks({ clicks: [{ userid: "u1", url: pages[0]!, eventTime: new Date(now - 30 * 60_000).toISOString() }] });
    expect(late.results[0]?.outcome.case).toBe("accepted");
    await expect.poll(async () => (await c.covisit.progress({})).deadLetteredClicks, { timeout: 30_000, interval: 200 }).toBe(1n);
    await expect.poll(async () => (await c.analytics.progress({})).lateClicks, { timeout: 30_000, interval: 200 }).toBe(1n);

    // ingest publishes a hiding and an erasure and reads the consumers' progress; covisit, profile and analytics apply both.
    expect((await c.ingest.setPageVisibility({ url: pages[1]!, hidden: true })).pending).toEqual([]);
    expect((await c.covisit.recommendation({ url: pages[0]! })).items).toEqual([]);
    expect((await c.ingest.deleteUser({ userid: "u1" })).pending).toEqual([]);
    expect((await c.covisit.recentPages({ userid: "u1" })).urls).toEqual([]);
    expect((await c.profile.exists({ userid: "u1" })).user).toBe(false);

    // Every consumer acked what it took: no message waits for a redelivery after a refused ack.
    const admin = await connect({ servers: nats.url, user: "admin", pass: natsPasswords.admin });
    try {
      const jsm = await jetstreamManager(admin);
      const unacked = async () => {
        const out: string[] = [];
        for (const stream of ["CLICKS", "CONTENT", "EMBEDDINGS", "VISIBILITY"])
          for (const info of await jsm.consumers.list(stream).next())
            if (info.num_ack_pending + info.num_pending + info.num_redelivered > 0) out.push(`${stream}/${info.name}`);
        return out;
      };
      await expect.poll(unacked, { timeout: 10_000, interval: 200 }).toEqual([]);
      const letters = Object.keys((await jsm.streams.info("DEAD_LETTERS", { subjects_filter: "dlq.>" })).state.subjects ?? {}).map((s) =>
        s.replace(/\.u[0-9a-f]+$/, ".u…"),
      );
      expect(letters.sort()).toEqual(["dlq.analytics-clicks.u…", "dlq.clicks.u…"]);
    } finally {
      await admin.close();
    }
  }, 120_000);

  it("covisit's credential cannot publish to clicks.>, nor purge or delete CLICKS, which keeps its clicks", async () => {
    const nc = await connectAs("covisit");
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const before = (await jsm.streams.info("CLICKS")).state.messages;
      expect(before).toBeGreaterThan(0);

      expect(await refusal(js.publish("clicks.0", new TextEncoder().encode("forged click")), "a click")).toMatchObject({
        operation: "publish",
        subject: "clicks.0",
      });
      expect(await refusal(jsm.streams.purge("CLICKS"), "the purge")).toMatchObject({ operation: "publish", subject: "$JS.API.STREAM.PURGE.CLICKS" });
      expect(await refusal(jsm.streams.delete("CLICKS"), "the delete")).toMatchObject({ operation: "publish", subject: "$JS.API.STREAM.DELETE.CLICKS" });
      // Nor read another service's replies and pulled messages.
      const sub = nc.subscribe("_INBOX_profile.>");
      await expect(sub.closed).resolves.toBeInstanceOf(PermissionViolationError);

      expect((await jsm.streams.info("CLICKS")).state.messages).toBe(before);
    } finally {
      await nc.close();
    }
  });

  it("no service's credential may purge or delete a stream, or change one but ingest's; without a user nothing connects", async () => {
    for (const user of USERS) {
      const nc = await connectAs(user);
      try {
        const jsm = await jetstreamManager(nc);
        for (const stream of ["CLICKS", "EMBEDDINGS", "DEAD_LETTERS"]) {
          await refusal(jsm.streams.purge(stream), `${user}'s purge of ${stream}`);
          await refusal(jsm.streams.delete(stream), `${user}'s delete of ${stream}`);
        }
        const { config } = await jsm.streams.info("CLICKS");
        const update = jsm.streams.update("CLICKS", { max_bytes: config.max_bytes });
        if (user === "ingest") await expect(update).resolves.toBeDefined();
        else await refusal(update, `${user}'s update of CLICKS`);
      } finally {
        await nc.close();
      }
    }
    await expect(connect({ servers: nats.url, reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers: nats.url, user: "covisit", pass: "wrong", reconnect: false })).rejects.toThrow(/Authorization/i);
  });

  it("a service that may not create streams waits for ingest to create a missing one, then serves", async () => {
    const admin = await connect({ servers: nats.url, user: "admin", pass: natsPasswords.admin });
    try {
      await stack.kill("covisit");
      await (await jetstreamManager(admin)).streams.delete("CONTENT");
      const covisit = stack.spawn("covisit");
      const healthz = () =>
        fetch(`${stack.url.covisit}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.status,
          () => "unreachable",
        );
      await sleep(3_000);
      expect(covisit.exitCode, "covisit waits instead of failing").toBeNull();
      expect(await healthz()).toBe("unreachable");
      // ingest creates the streams at start.
      await stack.kill("ingest");
      await stack.start("ingest");
      await expect.poll(healthz, { timeout: 20_000, interval: 200 }).toBe(200);
      expect((await (await jetstreamManager(admin)).streams.info("CONTENT")).config.name).toBe("CONTENT");
    } finally {
      await admin.close();
    }
  }, 60_000);
});

describe("covisit's Redis user (deploy/compose.yaml)", () => {
  const covisitUrl = () => redis.url.replace("redis://", `redis://covisit:${redisPasswords.REDIS_COVISIT_PASSWORD}@`);
  const adminUrl = () => redis.url.replace("redis://", `redis://:${redisPasswords.REDIS_ADMIN_PASSWORD}@`);
  /** The error a command was refused with, or "ok". */
  const outcome = (command: Promise<unknown>) =>
    command.then(
      () => "ok",
      (err: Error) => err.message.split(" ")[0],
    );

  it("runs covisit's commands on its keys, and nothing on any other key or on the server's settings", async () => {
    const admin = new Redis(adminUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    const covisit = new Redis(covisitUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    await Promise.all([admin.connect(), covisit.connect()]);
    try {
      await admin.set("other:secret", "kept");
      // What covisit does: its marker, a script on its keys, the policy check, a rebuild's scan and unlink.
      expect(await outcome(covisit.set("recsys:acl-test", "1", "NX"))).toBe("ok");
      expect(await covisit.eval("redis.call('ZINCRBY', KEYS[1], 1, ARGV[1]); return redis.call('EXISTS', KEYS[1])", 1, "recsys:cv:acl-test", "b")).toBe(1);
      expect(await covisit.info("memory")).toMatch(/^maxmemory_policy:noeviction/m);
      const [, keys] = await covisit.scan("0", "MATCH", "recsys:*acl-test", "COUNT", 1000);
      expect(keys.sort()).toEqual(["recsys:acl-test", "recsys:cv:acl-test"]);
      expect(await covisit.unlink(...keys)).toBe(2);

      // Another key, by a command or a script: refused.
      expect(await outcome(covisit.set("other:secret", "overwritten"))).toBe("NOPERM");
      expect(await outcome(covisit.exists("other:secret"))).toBe("NOPERM");
      expect(await outcome(covisit.unlink("other:secret"))).toBe("NOPERM");
      expect(await outcome(covisit.eval("return redis.call('SET', KEYS[1], 'x')", 1, "other:secret"))).toBe("NOPERM");
      expect(await outcome(covisit.eval("return redis.call('GET', 'other:secret')", 0))).toMatch(/NOPERM|ERR/);
      // Commands covisit never runs, and the server's settings: refused.
      for (const [name, command] of [
        ["GET", covisit.get("recsys:acl-test")],
        ["FLUSHALL", covisit.flushall()],
        ["FLUSHDB", covisit.flushdb()],
        ["CONFIG SET", covisit.config("SET", "maxmemory-policy", "allkeys-lru")],
        ["CONFIG GET", covisit.config("GET", "requirepass")],
        ["KEYS", covisit.keys("*")],
        ["ACL", covisit.call("ACL", "LIST")],
        ["SHUTDOWN", covisit.call("SHUTDOWN")],
      ] as const)
        expect(await outcome(command), name).toBe("NOPERM");

      expect(await admin.get("other:secret")).toBe("kept");
      expect((await admin.config("GET", "maxmemory-policy")) as string[]).toEqual(["maxmemory-policy", "noeviction"]);
    } finally {
      await admin.del("other:secret");
      admin.disconnect();
      covisit.disconnect();
    }
  });

  it("the gateway's user answers Recommendation from covisit's keys with covisit's script, and writes none of them", async () => {
    const admin = new Redis(adminUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    const gatewayRedis = new Redis(redis.url.replace("redis://", `redis://gateway:${redisPasswords.REDIS_GATEWAY_PASSWORD}@`), {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    await Promise.all([admin.connect(), gatewayRedis.connect()]);
    const ns = "gwacl";
    try {
      // covisit's keys as covisit writes them (with the admin user here), under the deployed prefix recsys:.
      const writer = new CovisitStore(admin, "", 0);
      const reader = CovisitStore.reader(gatewayRedis, "");
      const [a, b] = [`https://${ns}.example/a`, `https://${ns}.example/b`];
      await writer.markFirstClick();
      await writer.applyClicks([
        { eventId: `${ns}1`, userid: `${ns}-u`, url: a, eventTimeMs: Date.now() - 2_000, event: "view" },
        { eventId: `${ns}2`, userid: `${ns}-u`, url: b, eventTimeMs: Date.now() - 1_000, event: "view" },
      ]);
      await writer.markServed();
      expect(await reader.coVisitsAfter(a, 10, `${ns}-u`)).toEqual(await writer.coVisitsAfter(a, 10, `${ns}-u`));
      expect(await reader.coVisitsAfter(a, 10)).toEqual([{ recommendation: b, frequency: 1 }]);
      // Writing covisit's keys, by a command or a script: refused.
      expect(await outcome(gatewayRedis.set("recsys:gwacl", "x"))).toBe("NOPERM");
      expect(await outcome(gatewayRedis.eval("return redis.call('ZINCRBY', KEYS[1], 1, 'x')", 1, `recsys:cv:${a}`))).toBe("NOPERM");
      expect(await outcome(gatewayRedis.del(`recsys:cv:${a}`))).toBe("NOPERM");
    } finally {
      const keys = await admin.keys("recsys:*");
      if (keys.length) await admin.del(...keys);
      admin.disconnect();
      gatewayRedis.disconnect();
    }
  });

  it("without a password, or with covisit's user and a wrong one, nothing is allowed", async () => {
    const anonymous = new Redis(redis.url, { lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 1 });
    anonymous.on("error", () => undefined);
    await anonymous.connect();
    try {
      expect(await outcome(anonymous.get("recsys:acl-test"))).toBe("NOAUTH");
      expect(await outcome(anonymous.flushall())).toBe("NOAUTH");
      expect(await outcome(anonymous.call("AUTH", "covisit", "wrong"))).toBe("WRONGPASS");
    } finally {
      anonymous.disconnect();
    }
  });
});
