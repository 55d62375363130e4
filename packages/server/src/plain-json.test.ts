import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { CovisitService, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRpcServer, type RpcServer } from "./rpc-server.js";

// A hot method served both ways: its plainest calls on the plain path, the others by connect-es. A client must not be able to
// tell which: the same status, content type, body and trace header for every answer and every error.
const signals: AbortSignal[] = [];
async function recommendation(req: RecommendationRequest, ctx: HandlerContext) {
  signals.push(ctx.signal);
  if (req.url === "refused") throw new ConnectError("url: refused on purpose", Code.InvalidArgument);
  if (req.url === "crash") throw new Error("ECONNREFUSED redis://:secret@10.0.0.5:6379");
  if (req.url === "bad-header") ctx.responseHeader.set("x-echo", "a\x01b");
  if (req.url === "for-me") return { items: [{ recommendation: ctx.requestHeader.get("x-user") ?? "", frequency: 1n }] };
  return { items: [{ recommendation: `${req.url}/next`, frequency: BigInt(req.limit) }] };
}

let server: RpcServer;
beforeAll(async () => {
  server = await startRpcServer({
    name: "plain-json-test",
    host: "127.0.0.1",
    port: 0,
    routes: (router) => router.service(CovisitService, { recommendation }),
    plainJson: [{ method: CovisitService.method.recommendation, impl: recommendation }],
    healthy: async () => true,
    logger: createLogger("plain-json-test"),
  });
});
afterAll(() => server.close());

const path = "/recsys.covisit.v1.CovisitService/Recommendation";
async function call(body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${server.port}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    traced: /^[0-9a-f]{32}$/.test(res.headers.get("x-request-id") ?? ""),
    body: await res.text(),
  };
}
/** The same call on both paths: connect-es serves any call with a deadline. */
async function bothWays(body: string, headers: Record<string, string> = {}) {
  signals.length = 0;
  const plain = await call(body, headers);
  const plainSignal = signals.at(-1);
  const viaConnect = await call(body, { ...headers, "connect-timeout-ms": "5000" });
  return { plain, viaConnect, plainSignal, connectSignal: signals.at(-1) };
}

describe("the plain path for hot unary calls (Connect JSON over HTTP/1.1)", () => {
  it("answers as connect-es does, and is the path those calls take", async () => {
    const first = await bothWays(JSON.stringify({ url: "https://e.org/a", limit: 3 }));
    expect(first.plain).toEqual(first.viaConnect);
    expect(first.plain).toEqual({
      status: 200,
      type: "application/json",
      traced: true,
      body: '{"items":[{"recommendation":"https://e.org/a/next","frequency":"3"}]}',
    });
    const second = await bothWays(JSON.stringify({ url: "https://e.org/b" }));
    expect(second.plain).toEqual(second.viaConnect);
    // Every plain call shares one signal that never aborts; connect-es makes one per call.
    expect(second.plainSignal).toBe(first.plainSignal);
    expect(second.connectSignal).not.toBe(first.connectSignal);
  });

  it("passes the request's headers to the implementation", async () => {
    const { plain, viaConnect } = await bothWays(JSON.stringify({ url: "for-me" }), { "x-user": "u1" });
    expect(plain).toEqual(viaConnect);
    expect(plain.body).toContain('"recommendation":"u1"');
  });

  it("refuses as connect-es does: the implementation's error, a malformed or mistyped body, a bug", async () => {
    for (const body of [JSON.stringify({ url: "refused" }), '{"url":', '{"limit":"x"}', JSON.stringify({ url: "crash" })]) {
      const { plain, viaConnect } = await bothWays(body);
      expect(plain, body).toEqual(viaConnect);
      expect(plain.status, body).toBeGreaterThanOrEqual(400);
      expect(plain.type, body).toBe("application/json");
    }
    expect((await call(JSON.stringify({ url: "refused" }))).body).toBe('{"code":"invalid_argument","message":"url: refused on purpose"}');
    // A failure the implementation did not mean for the caller keeps its message (hosts, credentials) in the service's log.
    expect((await call(JSON.stringify({ url: "crash" }))).body).toBe('{"code":"internal","message":"internal error"}');
  });

  it("answers Internal, and stays up, when the implementation's answer cannot be written", async () => {
    expect(await call(JSON.stringify({ url: "bad-header" }))).toMatchObject({ status: 500, body: '{"code":"internal","message":"internal error"}' });
    expect((await call(JSON.stringify({ url: "https://e.org/after" }))).status).toBe(200);
  });

  it("leaves every other call to connect-es: too large, another protocol version, a charset it does not know", async () => {
    signals.length = 0;
    await call(JSON.stringify({ url: "https://e.org/c" }));
    const plainSignal = signals.at(-1);
    const tooLarge = JSON.stringify({ url: `https://e.org/${"x".repeat(1024 * 1024)}` });
    expect((await call(tooLarge)).status).toBe(429);
    // connect-es ignores the version header, and refuses a charset other than UTF-8 (415) without calling the implementation.
    for (const [headers, status] of [
      [{ "connect-protocol-version": "2" }, 200],
      [{ "content-type": "application/json; charset=latin1" }, 415],
      [{ "content-type": "application/json;  charset=utf-8" }, 415],
    ] as const) {
      const before = signals.length;
      expect((await call(JSON.stringify({ url: "https://e.org/c" }), headers)).status, JSON.stringify(headers)).toBe(status);
      expect(signals.slice(before).includes(plainSignal!), JSON.stringify(headers)).toBe(false);
    }
    await call(JSON.stringify({ url: "https://e.org/c" }), { "content-type": "application/json; charset=utf-8" });
    expect(signals.at(-1)).toBe(plainSignal);
  });
});
