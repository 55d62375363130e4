import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connect, headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { clicksOf, Topology } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, writesStored } from "./harness/oracle.js";
import { machine, startStack, type TestStack } from "./harness/stack.js";

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
const T = "2024-01-02T00:00:00Z";
const at = (minutes: number) => new Date(Date.parse(T) + minutes * 60_000).toISOString();

beforeAll(async () => {
  stack = await startStack("edges");
  c = clientsOf(stack);
});
afterAll(async () => stack?.stop());

/** A GraphQL document sent to the gateway; its first error thrown as the ConnectError it stands for. */
async function viaGraphql(query: string, variables?: Record<string, unknown>): Promise<unknown> {
  const res = await fetch(`${stack.url.gateway}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  expect(res.status).not.toBe(500);
  if (res.status === 413) throw new ConnectError("request body too large", Code.ResourceExhausted);
  const body = (await res.json()) as { data?: unknown; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  const first = body.errors?.[0];
  if (!first) return body.data;
  const code = Object.values(Code).find((v) => typeof v === "number" && Code[v].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase() === first.extensions?.code);
  throw new ConnectError(first.message, (code as Code | undefined) ?? Code.Unknown);
}

/** A Connect call made of raw bytes, as a client with broken encoding would send it; its error as a ConnectError. */
async function rawConnect(base: string, path: string, contentType: string, body: Uint8Array): Promise<unknown> {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": contentType }, body });
  if (res.ok) return res;
  if (res.status === 413) throw new ConnectError("request body too large", Code.ResourceExhausted);
  const err = (await res.json()) as { code: string; message: string };
  const code = Object.values(Code).find((v) => typeof v === "number" && Code[v].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toLowerCase() === err.code);
  throw new ConnectError(err.message, (code as Code | undefined) ?? Code.Unknown);
}

/** `head`, then bytes that are not UTF-8 (0xff 0xfe), then `tail`. */
const withBadUtf8 = (head: string, tail: string) => Buffer.concat([Buffer.from(head), Buffer.from([0xff, 0xfe]), Buffer.from(tail)]);

/** A protobuf string field (tag, length, bytes) as it goes on the wire. */
const protoString = (field: number, bytes: Uint8Array) => Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes]);

/** Clicks stored in CLICKS: every message read, a ClickBatch counting its clicks. */
async function clicksStored(): Promise<number> {
  const nc = await connect({ servers: machine.nats });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = `${stack.namespace.toUpperCase()}_CLICKS`;
    const { first_seq, last_seq, messages } = (await jsm.streams.info(stream)).state;
    let clicks = 0;
    for (let seq = first_seq; messages > 0 && seq <= last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      try {
        clicks += clicksOf({ data: m.data, headers: m.header }).length;
      } catch {
        // bytes that are no click (this suite's poison messages)
      }
    }
    return clicks;
  } finally {
    await nc.close();
  }
}

async function codeAndMessage(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: ce.code, message: ce.rawMessage };
  }
  throw new Error("the call succeeded");
}

async function waitApplied() {
  const target = await clicksLastSequence(stack);
  for (let i = 0; i < 200; i++) {
    if ((await c.covisit.progress({})).ackFloorStreamSequence >= target) return;
    await sleep(50);
  }
  throw new Error("covisit did not catch up");
}

describe("bad input is refused, names the field, and writes nothing", () => {
  const good = { userid: "u-bad", url: "https://en.wikipedia.org/wiki/Apache_Flink", eventTime: T, eventId: "" };
  // [what, the call, the code, the field the message starts with ("" when the refusal names none)]
  const cases: Array<[string, () => Promise<unknown>, keyof typeof Code, string]> = [];
  beforeAll(() => {
    const page = { url: "https://e.org/page", title: "A page", text: "Some text" };
    const big = "x".repeat(33 * 1024);
    const nested = `{ __type(name: "Events") { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }`;
    cases.push(
      ["empty userid", () => c.gateway.clickstream({ event: { ...good, userid: "" } }), "InvalidArgument", "event.userid"],
      ["userid over 256 chars", () => c.gateway.clickstream({ event: { ...good, userid: "u".repeat(257) } }), "InvalidArgument", "event.userid"],
      ["userid with a control character", () => c.gateway.clickstream({ event: { ...good, userid: "a\u0007b" } }), "InvalidArgument", "event.userid"],
      ["relative url", () => c.gateway.clickstream({ event: { ...good, url: "/wiki/Apache_Flink" } }), "InvalidArgument", "event.url"],
      ["ftp url", () => c.gateway.clickstream({ event: { ...good, url: "ftp://example.org/x" } }), "InvalidArgument", "event.url"],
      ["url over 2048 chars", () => c.gateway.clickstream({ event: { ...good, url: `https://e.org/${"x".repeat(2048)}` } }), "InvalidArgument", "event.url"],
      // Within the characters, past what PostgreSQL indexes (2,720 bytes): such a click stopped analytics' partition for good.
      ["url over 2048 bytes", () => c.gateway.clickstream({ event: { ...good, url: `https://e.org/${"漢".repeat(902)}` } }), "InvalidArgument", "event.url"],
      ["userid over 512 bytes", () => c.gateway.clickstream({ event: { ...good, userid: "😀".repeat(200) } }), "InvalidArgument", "event.userid"],
      ["time not RFC 3339", () => c.gateway.clickstream({ event: { ...good, eventTime: "02/01/2024 00:00" } }), "InvalidArgument", "event.event_time"],
      ["February 30th", () => c.gateway.clickstream({ event: { ...good, eventTime: "2024-02-30T00:00:00Z" } }), "InvalidArgument", "event.event_time"],
      [
        "time two days ahead",
        () => c.gateway.clickstream({ event: { ...good, eventTime: new Date(Date.now() + 2 * 86_400_000).toISOString() } }),
        "InvalidArgument",
        "event.event_time",
      ],
      ["event id with spaces", () => c.gateway.clickstream({ event: { ...good, eventId: "a b" } }), "InvalidArgument", "event.event_id"],
      ["missing event", () => c.gateway.clickstream({}), "InvalidArgument", "event"],
      ["limit 0", () => c.gateway.recommendation({ url: good.url, limit: 0 }), "InvalidArgument", "limit"],
      ["limit 1001", () => c.gateway.recommendation({ url: good.url, limit: 1001 }), "InvalidArgument", "limit"],
      ["recommendation of a non-url", () => c.gateway.recommendation({ url: "Apache Flink" }), "InvalidArgument", "url"],
      ["empty batch at ingest", () => c.ingest.publishClicks({ clicks: [] }), "InvalidArgument", "clicks"],
      ["content without an event", () => c.gateway.content({}), "InvalidArgument", "event"],
      ["content of a non-url", () => c.gateway.content({ event: { ...page, url: "zoop" } }), "InvalidArgument", "event.url"],
      [
        "content url over 2048 bytes",
        () => c.gateway.content({ event: { ...page, url: `https://e.org/${"漢".repeat(902)}` } }),
        "InvalidArgument",
        "event.url",
      ],
      ["content with empty text", () => c.gateway.content({ event: { ...page, text: " " } }), "InvalidArgument", "event.text"],
      ["content text of 33 KiB", () => c.gateway.content({ event: { ...page, text: big } }), "InvalidArgument", "event.text"],
      ["content title over 1024 chars", () => c.gateway.content({ event: { ...page, title: "t".repeat(1025) } }), "InvalidArgument", "event.title"],
      // PostgreSQL cannot store NUL: such a page was accepted, then refused by profile and dead-lettered.
      ["content text with a NUL", () => c.gateway.content({ event: { ...page, text: "a text with a \u0000 inside" } }), "InvalidArgument", "event.text"],
      ["content title with a control character", () => c.gateway.content({ event: { ...page, title: "a\u0085b" } }), "InvalidArgument", "event.title"],
      ["interest text with a NUL", () => c.gateway.addInterest({ interest: { userid: "u", text: "kafka\u0000" } }), "InvalidArgument", "interest.text"],
      ["content id with a space", () => c.gateway.content({ event: { ...page, id: "4 2" } }), "InvalidArgument", "event.id"],
      ["content source time not RFC 3339", () => c.gateway.content({ event: { ...page, sourceTime: "yesterday" } }), "InvalidArgument", "event.source_time"],
      ["like without liked", () => c.gateway.likes({}), "InvalidArgument", "liked"],
      ["like with an empty userid", () => c.gateway.likes({ liked: { userid: "", eventId: "42", liked: true } }), "InvalidArgument", "liked.userid"],
      ["like with an empty page id", () => c.gateway.likes({ liked: { userid: "u", eventId: "", liked: true } }), "InvalidArgument", "liked.eventId"],
      ["like of an unknown page", () => c.gateway.likes({ liked: { userid: "u", eventId: "404404", liked: true } }), "NotFound", "liked.eventId"],
      ["interest without interest", () => c.gateway.addInterest({}), "InvalidArgument", "interest"],
      ["interest with empty text", () => c.gateway.addInterest({ interest: { userid: "u", text: "" } }), "InvalidArgument", "interest.text"],
      ["interest text of 33 KiB", () => c.gateway.addInterest({ interest: { userid: "u", text: big } }), "InvalidArgument", "interest.text"],
      ["interest with an empty userid", () => c.gateway.addInterest({ interest: { userid: "", text: "kafka" } }), "InvalidArgument", "interest.userid"],
      ["events limit 0", () => c.gateway.events({ limit: 0 }), "InvalidArgument", "limit"],
      ["events offset -1", () => c.gateway.events({ limit: 5, offset: -1 }), "InvalidArgument", "offset"],
      ["events offset past a million", () => c.gateway.events({ limit: 5, offset: 1_000_001 }), "InvalidArgument", "offset"],
      ["liked events of an empty userid", () => c.gateway.eventsLiked({ userid: "" }), "InvalidArgument", "userid"],
      ["recommended events limit 1001", () => c.gateway.recommendedEvents({ userid: "u", limit: 1001 }), "InvalidArgument", "limit"],
      ["search with an empty query", () => c.gateway.personalizedEventSearch({ query: "", userid: "u" }), "InvalidArgument", "query"],
      ["search query over 1024 chars", () => c.gateway.personalizedEventSearch({ query: "q".repeat(1025), userid: "u" }), "InvalidArgument", "query"],
      ["similar content of an empty userid", () => c.gateway.similarContent({ userid: "" }), "InvalidArgument", "userid"],
      // websearch_to_tsquery nests each '-' on a stack of 32: PostgreSQL failed such a query, and the client got Internal.
      [
        "search query of 33 '-' in a row",
        () => c.gateway.personalizedEventSearch({ query: `foo ${"-".repeat(33)} bar`, userid: "u" }),
        "InvalidArgument",
        "query",
      ],
      // A cursor is base64url JSON anyone can write: a NUL in its key reached PostgreSQL, which refused the parameter (Internal).
      [
        "events cursor holding a NUL",
        () => c.gateway.events({ limit: 1, cursor: Buffer.from(JSON.stringify(["Events", "\u0000", "https://e.org/a"])).toString("base64url") }),
        "InvalidArgument",
        "cursor",
      ],

      ["embed 257 texts", () => c.embedder.embed({ texts: Array(257).fill("a") }), "InvalidArgument", "texts"],
      ["GraphQL Events(limit: 0)", () => viaGraphql("{ Events(limit: 0) { id } }"), "InvalidArgument", "limit"],
      [
        "GraphQL like with an empty userid",
        () => viaGraphql("mutation ($l: LikedInput!) { Likes(liked: $l) { _source_time } }", { l: { userid: "", eventId: 42, liked: true } }),
        "InvalidArgument",
        "liked.userid",
      ],
      [
        "GraphQL interest with empty text",
        () => viaGraphql('mutation { AddInterest(interest: {userid: "u", text: ""}) { _source_time } }'),
        "InvalidArgument",
        "interest.text",
      ],
      [
        "GraphQL click by both event and click",
        () => viaGraphql('mutation { Clickstream(event: {userid: "u", url: "https://e.org/a"}, click: {userid: "u", url: "https://e.org/a"}) { userid } }'),
        "InvalidArgument",
        "event or click",
      ],
      ["GraphQL query nested too deep", () => viaGraphql(nested), "Unknown", ""],
      [
        "invalid UTF-8 in a Connect JSON click's userid",
        () =>
          rawConnect(
            stack.url.gateway,
            "/recsys.gateway.v1.GatewayService/Clickstream",
            "application/json",
            withBadUtf8('{"event":{"userid":"u', '","url":"https://e.org/a"}}'),
          ),
        "InvalidArgument",
        "event.userid",
      ],
      [
        "invalid UTF-8 in a Connect JSON page's text",
        () =>
          rawConnect(
            stack.url.gateway,
            "/recsys.gateway.v1.GatewayService/Content",
            "application/json",
            withBadUtf8('{"event":{"url":"https://e.org/p","title":"t","text":"caf', '"}}'),
          ),
        "InvalidArgument",
        "event.text",
      ],
      // Binary protobuf is decoded before any handler runs; connect-es refuses bad UTF-8 there with Internal.
      [
        "invalid UTF-8 in a binary protobuf click",
        () =>
          rawConnect(
            stack.url.ingest,
            "/recsys.ingest.v1.IngestService/PublishClicks",
            "application/proto",
            protoString(1, Buffer.concat([protoString(1, Uint8Array.of(0x75, 0xff, 0xfe)), protoString(2, Buffer.from("https://e.org/a"))])),
          ),
        "Internal",
        "",
      ],
      // A plain object's `__proto__` is its prototype: a property of that name must be refused, not accepted and lost.
      [
        "a property named __proto__ in a JSON click",
        () =>
          rawConnect(
            stack.url.gateway,
            "/recsys.gateway.v1.GatewayService/Clickstream",
            "application/json",
            Buffer.from(JSON.stringify({ event: { ...good, eventId: "proto-json" } }).replace(/}}$/, ',"properties":{"__proto__":{"text":"x"}}}}')),
          ),
        "InvalidArgument",
        "event.properties.__proto__",
      ],
      [
        "a property named __proto__ in a binary protobuf click",
        () =>
          rawConnect(
            stack.url.gateway,
            "/recsys.gateway.v1.GatewayService/Clickstream",
            "application/proto",
            // ClickstreamRequest.event (1) { userid (1), url (2), properties (6) { key (1), value (2) { text (1) } } }
            protoString(
              1,
              Buffer.concat([
                protoString(1, Buffer.from("u-proto")),
                protoString(2, Buffer.from("https://e.org/a")),
                protoString(6, Buffer.concat([protoString(1, Buffer.from("__proto__")), protoString(2, protoString(1, Buffer.from("x")))])),
              ]),
            ),
          ),
        "InvalidArgument",
        "event.properties.__proto__",
      ],
      [
        "a property named __proto__ in a GraphQL click",
        () =>
          viaGraphql("mutation ($e: ClickEvent!) { Clickstream(event: $e) { userid } }", {
            e: { userid: "u-proto", url: "https://e.org/a", event_id: "proto-graphql", properties: { ["__proto__"]: "x" } },
          }),
        "InvalidArgument",
        "event.properties.__proto__",
      ],
      ["a 3 MB page text over Connect", () => c.gateway.content({ event: { ...page, text: "x".repeat(3_000_000) } }), "ResourceExhausted", ""],
      [
        "a 3 MB page text over GraphQL",
        () => viaGraphql("mutation ($e: ContentEvent!) { Content(event: $e) { url } }", { e: { ...page, text: "x".repeat(3_000_000) } }),
        "ResourceExhausted",
        "",
      ],
      ["SimilarContent limit 1001 over GraphQL", () => viaGraphql('{ SimilarContent(userid: "u", limit: 1001) { url } }'), "InvalidArgument", "limit"],
    );
  });

  it("answers the fitting code naming the field for each, and no stream gains a message", async () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    const before = await writesStored(stack);
    for (const [name, call, code, field] of cases) {
      const got = await codeAndMessage(call()).catch((err: Error) => ({ code: undefined, message: err.message }));
      expect({ name, code: got.code === undefined ? got.message : Code[got.code], field: field && got.message.split(":")[0] }).toEqual({ name, code, field });
    }
    expect(await writesStored(stack)).toEqual(before);
  });

  it("reports rejected clicks of a batch one by one and still publishes the valid ones", async () => {
    const before = await clicksStored();
    const res = await c.ingest.publishClicks({
      clicks: [
        { userid: "mix", url: "https://e.org/1", eventTime: T },
        { userid: "", url: "https://e.org/2", eventTime: T },
        { userid: "mix", url: "https://e.org/3", eventTime: "not a time" },
        { userid: "mix", url: "https://e.org/4", eventTime: at(1) },
        { userid: "😀".repeat(200), url: "https://e.org/5", eventTime: T },
        { userid: "mix", url: `https://e.org/${"漢".repeat(902)}`, eventTime: T },
      ],
    });
    expect(res.results.map((r) => (r.outcome.case === "rejected" ? r.outcome.value.field : r.outcome.case))).toEqual([
      "accepted",
      "userid",
      "event_time",
      "accepted",
      "userid",
      "url",
    ]);
    expect(await clicksStored()).toBe(before + 2);
  });

  it("rejects the item of a JSON batch whose userid is not valid UTF-8, by field, and publishes the rest", async () => {
    const before = await clicksStored();
    const res = (await rawConnect(
      stack.url.ingest,
      "/recsys.ingest.v1.IngestService/PublishClicks",
      "application/json",
      withBadUtf8(
        '{"clicks":[{"userid":"ok","url":"https://e.org/u1","eventTime":"2024-01-02T00:00:00Z"},{"userid":"u',
        '","url":"https://e.org/u2","eventTime":"2024-01-02T00:00:00Z"}]}',
      ),
    )) as Response;
    const body = (await res.json()) as { results: Array<{ accepted?: unknown; rejected?: { field: string; reason: string } }> };
    expect(body.results.map((r) => r.rejected?.field ?? "accepted")).toEqual(["accepted", "userid"]);
    expect(body.results[1]!.rejected!.reason).toMatch(/valid UTF-8/);
    expect(await clicksStored()).toBe(before + 1);
  });

  it("refuses a request body over 1 MiB", async () => {
    const before = await clicksStored();
    const res = await fetch(`${stack.url.gateway}/recsys.gateway.v1.GatewayService/Clickstream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ event: { userid: "big", url: `https://e.org/${"x".repeat(1_100_000)}` } }),
    });
    expect(res.ok).toBe(false);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toMatch(/1048576|max/);
    expect(await clicksStored()).toBe(before);
  });
});

describe("idempotency and lateness", () => {
  it("accepts the same batch twice, stores it once, counts it once", async () => {
    const batch = {
      clicks: [
        { userid: "twice", url: "https://e.org/a", eventTime: T },
        { userid: "twice", url: "https://e.org/b", eventTime: at(2) },
      ],
    };
    const first = await c.ingest.publishClicks(batch);
    const before = await clicksStored();
    const second = await c.ingest.publishClicks(batch);
    expect(await clicksStored()).toBe(before);
    expect(second.results.map((r) => r.outcome.case === "accepted" && r.outcome.value.duplicate)).toEqual([true, true]);
    expect(second.results.map((r) => r.outcome.value?.$typeName === "recsys.ingest.v1.AcceptedClick" && r.outcome.value.eventId)).toEqual(
      first.results.map((r) => r.outcome.value?.$typeName === "recsys.ingest.v1.AcceptedClick" && r.outcome.value.eventId),
    );
    await waitApplied();
    const rec = await c.gateway.recommendation({ url: "https://e.org/a" });
    expect(rec.items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([["https://e.org/b", 1]]);
  });

  it("ignores a redelivered click that got past the broker's dedup (new message, same event_id)", async () => {
    const res = await c.ingest.publishClicks({
      clicks: [
        { userid: "redeliver", url: "https://e.org/r1", eventTime: T },
        { userid: "redeliver", url: "https://e.org/r2", eventTime: at(1) },
      ],
    });
    const accepted = res.results[0]!.outcome;
    if (accepted.case !== "accepted") throw new Error("not accepted");
    // Published straight onto the stream under another Nats-Msg-Id: only the consumer's idempotency can stop it.
    const nc = await connect({ servers: machine.nats });
    try {
      const again = create(ClickSchema, { eventId: accepted.value.eventId, userid: "redeliver", url: "https://e.org/r1", eventTimeMs: BigInt(Date.parse(T)) });
      const h = headers();
      await jetstream(nc).publish(`${stack.namespace}.clicks.0`, toBinary(ClickSchema, again), { msgID: "another-id", headers: h });
    } finally {
      await nc.close();
    }
    await waitApplied();
    const rec = await c.gateway.recommendation({ url: "https://e.org/r1" });
    expect(rec.items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([["https://e.org/r2", 1]]);
  });

  it("dead-letters a click later than the allowed lateness, with its reason, and counts nothing", async () => {
    await c.gateway.clickstream({ event: { userid: "late", url: "https://e.org/l1", eventTime: at(30) } });
    await c.gateway.clickstream({ event: { userid: "late", url: "https://e.org/l0", eventTime: at(30 - 6) } });
    await waitApplied();
    expect((await c.gateway.recommendation({ url: "https://e.org/l0" })).items).toEqual([]);
    expect((await c.covisit.progress({})).deadLetteredClicks).toBe(1n);
    const nc = await connect({ servers: machine.nats });
    try {
      const jsm = await jetstreamManager(nc);
      // Filed under its user.
      const subject = new Topology(stack.namespace).deadLetterSubject("clicks", { userid: "late" });
      const m = await jsm.streams.getMessage(`${stack.namespace.toUpperCase()}_DEAD_LETTERS`, { last_by_subj: subject });
      expect(m?.header.get("recsys-reason")).toMatch(/^late: watermark 2024-01-02T00:30:00.000Z/);
    } finally {
      await nc.close();
    }
    const metrics = await (await fetch(`${stack.url.covisit}/metrics`)).text();
    expect(metrics).toMatch(/^recsys_dead_lettered_total\{source="clicks",cause="late",service="covisit"\} 1$/m);
    expect(metrics).toMatch(/^recsys_covisit_clicks_total\{outcome="late",service="covisit"\} 1$/m);
  });

  it("dead-letters bytes that do not decode, on every consumed stream, and each consumer goes on", async () => {
    const nc = await connect({ servers: machine.nats });
    const poison = Uint8Array.of(0xff, 0xff, 0xff, 0x07);
    const ns = stack.namespace;
    try {
      const js = jetstream(nc);
      for (const subject of [`${ns}.clicks.3`, `${ns}.content.3`, `${ns}.engagement.likes.3`, `${ns}.engagement.interests.3`]) {
        await js.publish(subject, poison, { msgID: `poison-${subject}` });
      }
      const jsm = await jetstreamManager(nc);
      const dlq = `${ns.toUpperCase()}_DEAD_LETTERS`;
      // covisit and profile both read CLICKS; the embedder reads CONTENT and interests; profile reads likes.
      // The clicks subject already holds the late click of the test above: wait for each source's
      // last reason, not for its subject to exist.
      const sources = ["clicks", "profile-clicks", "content", "likes", "interests"];
      // Each source's last letter, among the subjects it files under (dlq.<source>.<user or message>).
      const reasons = async () => {
        const info = await jsm.streams.info(dlq, { subjects_filter: `${ns}.dlq.>` });
        const subjects = Object.keys(info.state.subjects ?? {});
        const out: Record<string, string | undefined> = {};
        for (const source of sources) {
          const last = await Promise.all(
            subjects.filter((s) => s.startsWith(`${ns}.dlq.${source}.`)).map((s) => jsm.streams.getMessage(dlq, { last_by_subj: s })),
          );
          const m = last.sort((a, b) => (b?.seq ?? 0) - (a?.seq ?? 0))[0];
          if (m) out[source] = m.header.get("recsys-reason")?.split(":")[0];
        }
        return out;
      };
      await expect.poll(reasons, { timeout: 20_000, interval: 200 }).toEqual(Object.fromEntries(sources.map((s) => [s, "undecodable"])));
    } finally {
      await nc.close();
    }
    // The consumers went on: a click after the poison is counted.
    await c.gateway.clickstream({ event: { userid: "after-poison", url: "https://e.org/p1", eventTime: at(1) } });
    await c.gateway.clickstream({ event: { userid: "after-poison", url: "https://e.org/p2", eventTime: at(2) } });
    await waitApplied();
    expect((await c.gateway.recommendation({ url: "https://e.org/p1" })).items.map((i) => i.recommendation)).toEqual(["https://e.org/p2"]);
  });
});
