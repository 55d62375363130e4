// Who may call the gateway: service keys with a scope, user tokens acting only as their user, and
// limits on queries and mutations per client and per user, at both doors.
import type { RpcServer } from "@recsys/server";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Access, memoryLimiters, parseApiKeys, refusals as refusalsTotal, type RateLimits } from "./access.js";
import { Authenticator } from "./auth.js";
import { DOC, gatewayOverFakeBackends, logger, type Answer, type BackendCall } from "./testing.js";
import type { Logger } from "@recsys/logging";

/** Every call the fake backends got. */
let asked: BackendCall[] = [];
const startGateway = gatewayOverFakeBackends({ record: (call) => asked.push(call) });
beforeEach(() => {
  asked = [];
});

const READ_KEY = "read-key-0123456789";
const WRITE_KEY = "write-key-0123456789";
const ADMIN_KEY = "admin-key-0123456789";
const SECRET = "a-test-secret-of-at-least-32-bytes!!";
const LIMITS: RateLimits = { reads: 1_000, writes: 3, userReads: 4, userWrites: 2 };

/** A user token for `sub`, signed with `secret`, expiring `expiresIn` from now. */
const tokenFor = (sub: string, { secret = SECRET, expiresIn = "5m" } = {}) =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuedAt().setExpirationTime(expiresIn).sign(new TextEncoder().encode(secret));

let server: RpcServer;
let base: string;
beforeAll(async () => {
  const authenticator = new Authenticator(parseApiKeys(`${READ_KEY}:read, ${WRITE_KEY}:write, ${ADMIN_KEY}:admin`), { secret: SECRET });
  server = await startGateway(new Access(authenticator, LIMITS, memoryLimiters(LIMITS), logger));
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => server?.close());

type Credentials = { key?: string; token?: string; authorization?: string };
const headers = ({ key, token, authorization }: Credentials = {}) => ({
  "content-type": "application/json",
  ...(key ? { "x-api-key": key } : {}),
  ...(token ? { authorization: `Bearer ${token}` } : {}),
  ...(authorization ? { authorization } : {}),
});
const connectCall = async (method: string, body: object, credentials?: Credentials) => {
  const res = await fetch(`${base}/recsys.gateway.v1.GatewayService/${method}`, { method: "POST", headers: headers(credentials), body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
};
const graphqlCall = async (query: string, credentials?: Credentials) => {
  const res = await fetch(`${base}/graphql`, { method: "POST", headers: headers(credentials), body: JSON.stringify({ query }) });
  return (await res.json()) as Answer;
};
const clickBy = (userid: string) => ({ event: { userid, url: "https://en.wikipedia.org/wiki/Zoop" } });

describe("service keys", () => {
  it("refuse a call without credentials or with an unknown key at both doors, and reach no backend", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" })).body).toMatchObject({
      code: "unauthenticated",
      message: "credentials required: an x-api-key header or authorization: Bearer <user token>",
    });
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, { key: "not-a-configured-key" })).body).toMatchObject({
      code: "unauthenticated",
      message: "x-api-key: not a valid API key",
    });
    expect((await graphqlCall(DOC.events)).errors).toMatchObject([{ extensions: { code: "UNAUTHENTICATED" } }]);
    expect(asked).toEqual([]);
  });

  it("let a read key query but not write, and a write key do both, for any user", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, { key: READ_KEY })).status).toBe(200);
    expect((await graphqlCall(DOC.events, { key: READ_KEY })).data?.Events).toHaveLength(2);
    asked = [];
    expect((await connectCall("Clickstream", clickBy("1"), { key: READ_KEY })).body).toMatchObject({
      code: "permission_denied",
      message: "x-api-key: this key's scope is read; clickstream needs write",
    });
    expect((await graphqlCall(DOC.clickstream, { key: READ_KEY })).errors).toMatchObject([{ extensions: { code: "PERMISSION_DENIED" } }]);
    expect(asked).toEqual([]);
    expect((await graphqlCall(DOC.clickstream, { key: WRITE_KEY })).data).toEqual({ Clickstream: { userid: "1" } });
    expect((await connectCall("SimilarContent", { userid: "someone-else" }, { key: READ_KEY })).status).toBe(200);
  });

  it("limit mutations per key, across both doors, apart from queries", async () => {
    // The write key used one of its 3 mutations above; two more pass, the next is refused.
    expect((await connectCall("Clickstream", clickBy("2"), { key: WRITE_KEY })).status).toBe(200);
    expect((await graphqlCall(DOC.clickstream, { key: WRITE_KEY })).errors).toBeUndefined();
    asked = [];
    expect((await connectCall("Clickstream", clickBy("3"), { key: WRITE_KEY })).body).toMatchObject({
      code: "resource_exhausted",
      message: expect.stringMatching(/^rate limit: at most 3 mutations a minute per client/),
    });
    expect((await graphqlCall(DOC.clickstream, { key: WRITE_KEY })).errors).toMatchObject([{ extensions: { code: "RESOURCE_EXHAUSTED" } }]);
    expect(asked).toEqual([]);
    for (let i = 0; i < 5; i++) expect((await connectCall("Recommendation", { url: "https://e.org/a" }, { key: WRITE_KEY })).status).toBe(200);
  });

  it("limit a user's queries: over it, Recommendation is refused (its read, made meanwhile, is dropped), by either path", async () => {
    const token = await tokenFor("query-limit-user");
    for (let i = 0; i < LIMITS.userReads; i++)
      expect((await connectCall("Recommendation", { url: "https://e.org/a" }, { token })).body).toEqual({
        items: [{ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: "3" }],
      });
    const refused = { code: "resource_exhausted", message: expect.stringMatching(/^rate limit: at most 4 queries a minute per user; retry in \d+ s$/) };
    // The plain path (Connect JSON without a deadline) and connect-es (with one) refuse alike.
    expect(await connectCall("Recommendation", { url: "https://e.org/a" }, { token })).toEqual({ status: 429, body: refused });
    const withDeadline = await fetch(`${base}/recsys.gateway.v1.GatewayService/Recommendation`, {
      method: "POST",
      headers: { ...headers({ token }), "connect-timeout-ms": "5000" },
      body: JSON.stringify({ url: "https://e.org/a" }),
    });
    expect({ status: withDeadline.status, body: await withDeadline.json() }).toEqual({ status: 429, body: refused });
  });

  it("refuse a user over its query limit before any backend's work when Recommendation may fall back", async () => {
    const token = await tokenFor("fallback-limit-user");
    const body = { url: "https://e.org/none", limit: 10, fallback: true, userid: "fallback-limit-user" };
    for (let i = 0; i < LIMITS.userReads; i++) expect((await connectCall("Recommendation", body, { token })).status).toBe(200);
    expect(asked.some((call) => call.rpc === "profile.relatedContent")).toBe(true);
    asked = [];
    expect((await connectCall("Recommendation", body, { token })).status).toBe(429);
    expect(
      (await graphqlCall(`{ Recommendation(url: "https://e.org/none", fallback: true, userid: "fallback-limit-user") { recommendation } }`, { token })).errors,
    ).toMatchObject([{ extensions: { code: "RESOURCE_EXHAUSTED" } }]);
    expect(asked).toEqual([]);
  });

  it("let only an admin key erase a user or hide a page, at both doors", async () => {
    for (const key of [READ_KEY, WRITE_KEY]) {
      const scope = key === READ_KEY ? "read" : "write";
      expect((await connectCall("DeleteUser", { userid: "1234" }, { key })).body).toMatchObject({
        code: "permission_denied",
        message: `x-api-key: this key's scope is ${scope}; deleteUser needs admin`,
      });
      expect((await graphqlCall(`mutation { HidePage(url: "https://e.org/a") { pending } }`, { key })).errors).toMatchObject([
        { extensions: { code: "PERMISSION_DENIED" } },
      ]);
    }
    expect(asked).toEqual([]);
    expect((await connectCall("DeleteUser", { userid: "1234" }, { key: ADMIN_KEY })).status).toBe(200);
    expect((await graphqlCall(`mutation { HidePage(url: "https://e.org/a") { pending } }`, { key: ADMIN_KEY })).data).toEqual({
      HidePage: { pending: ["analytics-visibility"] },
    });
  });

  it("refuse a malformed key list at start", () => {
    expect(() => parseApiKeys("short:write")).toThrow(/GATEWAY_API_KEYS/);
    expect(() => parseApiKeys("a-long-enough-key-123:root")).toThrow(/GATEWAY_API_KEYS/);
    expect(parseApiKeys("a-long-enough-key-123:admin")).toEqual(new Map([["a-long-enough-key-123", "admin"]]));
    expect(parseApiKeys("")).toEqual(new Map());
  });
});

describe("user tokens", () => {
  it("may not erase even their own user, nor hide pages", async () => {
    const token = await tokenFor("1234");
    expect((await connectCall("DeleteUser", { userid: "1234" }, { token })).body).toMatchObject({
      code: "permission_denied",
      message: "authorization: deleteUser needs a service key, not a user token",
    });
    expect((await connectCall("HidePage", { url: "https://e.org/a", hidden: true }, { token })).body).toMatchObject({ code: "permission_denied" });
    expect(asked).toEqual([]);
  });

  it("act for their own user: clicks, and reads of their own similar content", async () => {
    const token = await tokenFor("alice");
    expect((await connectCall("Clickstream", clickBy("alice"), { token })).status).toBe(200);
    expect(asked.map((a) => a.rpc)).toEqual(["ingest.publishClicks"]);
    expect((await connectCall("SimilarContent", { userid: "alice" }, { token })).status).toBe(200);
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, { token })).status).toBe(200);
    expect((await connectCall("Recommendation", { url: "https://e.org/a", userid: "alice" }, { token })).status).toBe(200);
    expect((await connectCall("RelatedContent", { url: "https://e.org/a" }, { token })).status).toBe(200);
  });

  it("refuse acting for another user with PermissionDenied naming the field, and write nothing", async () => {
    const token = await tokenFor("mallory");
    asked = [];
    expect((await connectCall("Clickstream", clickBy("alice"), { token })).body).toEqual({
      code: "permission_denied",
      message: "event.userid: a user token acts only for its own user (mallory)",
    });
    expect((await connectCall("Likes", { liked: { userid: "alice", eventId: "42672986", liked: true } }, { token })).body).toMatchObject({
      code: "permission_denied",
      message: expect.stringMatching(/^liked\.userid: /),
    });
    expect((await connectCall("EventsLiked", { userid: "alice" }, { token })).body).toMatchObject({
      code: "permission_denied",
      message: expect.stringMatching(/^userid: /),
    });
    // Recommendation and RelatedContent take a userid only to leave out that user's pages: the user's own.
    expect((await connectCall("Recommendation", { url: "https://e.org/a", userid: "alice" }, { token })).body).toEqual({
      code: "permission_denied",
      message: "userid: a user token acts only for its own user (mallory)",
    });
    expect((await connectCall("RelatedContent", { url: "https://e.org/a", userid: "alice" }, { token })).body).toMatchObject({ code: "permission_denied" });
    expect((await graphqlCall(`query { SimilarContent(userid: "alice") { url } }`, { token })).errors).toMatchObject([
      { message: "userid: a user token acts only for its own user (mallory)", extensions: { code: "PERMISSION_DENIED" } },
    ]);
    // Pages are the site's: no user token writes one.
    expect((await connectCall("Content", { event: { url: "https://e.org/p", title: "P", text: "p" } }, { token })).body).toMatchObject({
      code: "permission_denied",
    });
    expect(asked).toEqual([]);
  });

  it("refuse an expired, a forged, a subject-less and a malformed token with Unauthenticated and the reason", async () => {
    const expired = await tokenFor("alice", { expiresIn: "-1m" });
    expect((await connectCall("SimilarContent", { userid: "alice" }, { token: expired })).body).toEqual({
      code: "unauthenticated",
      message: "authorization: the token has expired",
    });
    const forged = await tokenFor("alice", { secret: "another-secret-of-at-least-32-bytes!" });
    expect((await connectCall("SimilarContent", { userid: "alice" }, { token: forged })).body).toEqual({
      code: "unauthenticated",
      message: "authorization: the token's signature does not verify",
    });
    const noExpiry = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice").sign(new TextEncoder().encode(SECRET));
    expect((await connectCall("SimilarContent", { userid: "alice" }, { token: noExpiry })).body).toMatchObject({
      code: "unauthenticated",
      message: expect.stringMatching(/exp/),
    });
    expect((await connectCall("SimilarContent", { userid: "alice" }, { authorization: "Basic YWxpY2U6eA==" })).body).toMatchObject({
      code: "unauthenticated",
      message: "authorization: must be Bearer <token>",
    });
    expect((await graphqlCall(DOC.events, { token: "not.a.token" })).errors).toMatchObject([{ extensions: { code: "UNAUTHENTICATED" } }]);
    expect(asked).toEqual([]);
  });

  it("limit each user on its own, below the service keys' limits", async () => {
    const token = await tokenFor("bob");
    for (let i = 0; i < 2; i++) expect((await connectCall("Clickstream", clickBy("bob"), { token })).status).toBe(200);
    expect((await connectCall("Clickstream", clickBy("bob"), { token })).body).toMatchObject({
      code: "resource_exhausted",
      message: expect.stringMatching(/^rate limit: at most 2 mutations a minute per user/),
    });
    for (let i = 0; i < 4; i++) expect((await connectCall("SimilarContent", { userid: "bob" }, { token })).status).toBe(200);
    expect((await connectCall("SimilarContent", { userid: "bob" }, { token })).body).toMatchObject({ code: "resource_exhausted" });
    // Another user has limits of its own.
    expect((await connectCall("Clickstream", clickBy("carol"), { token: await tokenFor("carol") })).status).toBe(200);
  });
});

describe("refusals", () => {
  afterEach(() => vi.useRealTimers());

  it("are each counted in the metrics, and logged at most once a second for each kind with how many there were since", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const lines: Array<{ message: string; refusals: number; address: string }> = [];
    const warn = (fields: { refusals: number; address: string }, message: string) =>
      lines.push({ message, refusals: fields.refusals, address: fields.address });
    const capture = { warn, info: () => {}, error: () => {}, debug: () => {}, child: () => capture } as unknown as Logger;
    const authenticator = new Authenticator(parseApiKeys(`${READ_KEY}:read, ${WRITE_KEY}:write`), { secret: SECRET });
    const access = new Access(authenticator, LIMITS, memoryLimiters(LIMITS), capture);
    const refusals = async (
      n: number,
      caller: { apiKey?: string; authorization?: string; address: string },
      method: "recommendation" | "clickstream" | "deleteUser",
    ) => {
      for (let i = 0; i < n; i++) {
        await expect(
          access.check(method, caller, method === "recommendation" ? { url: "https://e.org/a" } : ({ event: { userid: "u" } } as never)),
        ).rejects.toThrow();
      }
    };
    const counted = async () => Object.fromEntries((await refusalsTotal.get()).values.map((v) => [v.labels.kind, v.value]));
    const before = await counted();
    // A write key's three mutations a minute, then refusals.
    for (let i = 0; i < 3; i++) await access.check("clickstream", { apiKey: WRITE_KEY, address: "10.0.0.2" }, { event: { userid: "u" } } as never);
    await refusals(200, { address: "10.0.0.1" }, "recommendation");
    await refusals(200, { apiKey: READ_KEY, address: "10.0.0.2" }, "deleteUser");
    await refusals(200, { apiKey: WRITE_KEY, address: "10.0.0.3" }, "clickstream");
    const alice = `Bearer ${await tokenFor("alice")}`;
    await refusals(200, { authorization: alice, address: "10.0.0.4" }, "deleteUser");
    await refusals(200, { authorization: alice, address: "10.0.0.5" }, "clickstream");
    expect(lines).toEqual([
      { message: "refused: not authenticated", refusals: 1, address: "10.0.0.1" },
      { message: "refused: API key scope too low", refusals: 1, address: "10.0.0.2" },
      { message: "refused: rate limit", refusals: 1, address: "10.0.0.3" },
      { message: "refused: a user token where a service key is needed", refusals: 1, address: "10.0.0.4" },
      { message: "refused: user token acting for another user", refusals: 1, address: "10.0.0.5" },
    ]);
    // Every one is counted in the metrics.
    const after = await counted();
    for (const kind of ["unauthenticated", "scope", "rate_limit", "user_token", "other_user"]) {
      expect((after[kind] ?? 0) - (before[kind] ?? 0)).toBe(200);
    }
    // A second on, the next refusal of a kind tells how many were not written.
    vi.setSystemTime(Date.now() + 1_000);
    await refusals(1, { address: "10.0.0.6" }, "recommendation");
    expect(lines.slice(5)).toEqual([{ message: "refused: not authenticated", refusals: 200, address: "10.0.0.6" }]);
  });
});

describe("failed authentications", () => {
  afterEach(() => vi.useRealTimers());
  const authenticator = () => new Authenticator(parseApiKeys(`${READ_KEY}:read`), { secret: SECRET });
  const similar = (access: Access, caller: { apiKey?: string; authorization?: string; address: string }) =>
    access.check("similarContent", caller, { userid: "alice" } as never).then(
      () => "ok",
      (err: Error & { code?: number }) => err.message.replace(/^\[\w+\] /, ""),
    );

  it("past the limit from one address, refuse its calls for the rest of the minute before checking them, but for a key or a token verified before", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const access = new Access(authenticator(), LIMITS, memoryLimiters(LIMITS), logger, 3);
    const A = "10.1.0.1";
    const alice = `Bearer ${await tokenFor("alice")}`;
    const forged = `Bearer ${await tokenFor("alice", { secret: "another-secret-of-at-least-32-bytes!" })}`;
    const before = (await refusalsTotal.get()).values.find((v) => v.labels.kind === "auth_failures")?.value ?? 0;
    expect(await similar(access, { authorization: alice, address: A })).toBe("ok");
    for (let i = 0; i < 3; i++)
      expect(await similar(access, { authorization: forged, address: A })).toBe("authorization: the token's signature does not verify");
    // A good token never seen is refused too: it was not checked.
    const unseen = `Bearer ${await tokenFor("alice", { expiresIn: "10m" })}`;
    const refused = /^authentication: 3 calls from this address failed it within a minute; retry in (60|59) s$/;
    expect(await similar(access, { authorization: unseen, address: A })).toMatch(refused);
    expect(await similar(access, { authorization: forged, address: A })).toMatch(refused);
    expect(await similar(access, { apiKey: "not-a-key-0123456789", address: A })).toMatch(refused);
    // What holds without a signature to check still passes, and other addresses are as before.
    expect(await similar(access, { apiKey: READ_KEY, address: A })).toBe("ok");
    expect(await similar(access, { authorization: alice, address: A })).toBe("ok");
    expect(await similar(access, { authorization: unseen, address: "10.1.0.2" })).toBe("ok");
    expect(await similar(access, { authorization: forged, address: "10.1.0.3" })).toBe("authorization: the token's signature does not verify");
    const after = (await refusalsTotal.get()).values.find((v) => v.labels.kind === "auth_failures")?.value ?? 0;
    expect(after - before).toBe(3);
    // A minute on, the address's calls are checked again.
    vi.setSystemTime(Date.now() + 60_000);
    const another = `Bearer ${await tokenFor("alice", { expiresIn: "20m" })}`;
    expect(await similar(access, { authorization: another, address: A })).toBe("ok");
    expect(await similar(access, { authorization: forged, address: A })).toBe("authorization: the token's signature does not verify");
  });

  it("let a user whose token verified before through an address kept refused, minute after minute, checking the token again", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const access = new Access(authenticator(), LIMITS, memoryLimiters(LIMITS), logger, 3);
    const A = "10.3.0.1";
    const alice = `Bearer ${await tokenFor("alice", { expiresIn: "10m" })}`;
    const forged = `Bearer ${await tokenFor("alice", { secret: "another-secret-of-at-least-32-bytes!" })}`;
    const refused = /^authentication: 3 calls from this address failed it within a minute/;
    expect(await similar(access, { authorization: alice, address: A })).toBe("ok");
    // Someone behind the same address fails on purpose every minute; alice goes on, her token checked again each minute.
    for (let minute = 0; minute < 3; minute++) {
      for (let i = 0; i < 3; i++) await similar(access, { authorization: forged, address: A });
      expect(await similar(access, { authorization: forged, address: A })).toMatch(refused);
      vi.setSystemTime(Date.now() + 30_000);
      expect(await similar(access, { authorization: alice, address: A })).toBe("ok");
      vi.setSystemTime(Date.now() + 31_000);
    }
    // A token never verified is still refused unchecked there.
    for (let i = 0; i < 3; i++) await similar(access, { authorization: forged, address: A });
    expect(await similar(access, { authorization: `Bearer ${await tokenFor("alice", { expiresIn: "20m" })}`, address: A })).toMatch(refused);
  });

  it("take a verified token without checking it again only until it expires", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const access = new Access(authenticator(), LIMITS, memoryLimiters(LIMITS), logger);
    const soon = `Bearer ${await tokenFor("alice", { expiresIn: "30s" })}`;
    expect(await similar(access, { authorization: soon, address: "10.2.0.1" })).toBe("ok");
    vi.setSystemTime(Date.now() + 20_000);
    expect(await similar(access, { authorization: soon, address: "10.2.0.1" })).toBe("ok");
    vi.setSystemTime(Date.now() + 11_000);
    expect(await similar(access, { authorization: soon, address: "10.2.0.1" })).toBe("authorization: the token has expired");
  });
});
