import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CovisitService, RecommendationRequestSchema, RecommendationResponseSchema, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startRpcServer, type RpcServer } from "./rpc-server.js";

// Every unary method's plainest gRPC calls on the plain path, the others by connect-es. A client must not be able to tell which;
// the implementation can: connect-es aborts a call's signal when the call ends, the plain path only at a deadline or a client gone.
const seen: Array<{ url: string; signal: AbortSignal }> = [];
async function recommendation(req: RecommendationRequest, ctx: HandlerContext) {
  seen.push({ url: req.url, signal: ctx.signal });
  if (req.url === "refused") throw new ConnectError("url: refused on purpose, 100%", Code.InvalidArgument, { "x-why": "a test" });
  if (req.url === "crash") throw new Error("ECONNREFUSED redis://:secret@10.0.0.5:6379");
  // An error message cut from user input mid-emoji: grpc-message cannot percent-encode its lone surrogate.
  if (req.url === "surrogate") throw new ConnectError("url: \ud83d is not a url", Code.InvalidArgument);
  if (req.url === "pause") await sleep(100);
  if (req.url === "peer") return { items: [{ recommendation: ctx.requestHeader.get("x-recsys-peer") ?? "", frequency: 1n }] };
  if (req.url === "slow") await sleep(1_000, undefined, { signal: ctx.signal }).catch(() => undefined);
  if (req.url === "for-me") return { items: [{ recommendation: ctx.requestHeader.get("x-user") ?? "", frequency: 1n }] };
  return { items: [{ recommendation: `${req.url}/next`, frequency: BigInt(req.limit) }] };
}

const MAX_BYTES = 64 * 1024;
let server: RpcServer;
let session: http2.ClientHttp2Session;
beforeAll(async () => {
  server = await startRpcServer({
    name: "plain-grpc-test",
    host: "127.0.0.1",
    port: 0,
    routes: (router) => router.service(CovisitService, { recommendation }),
    healthy: async () => true,
    logger: createLogger("plain-grpc-test"),
    maxRequestBytes: MAX_BYTES,
  });
  session = http2.connect(`http://127.0.0.1:${server.port}`);
});
afterAll(async () => {
  session.close();
  await server.close();
});

const path = "/recsys.covisit.v1.CovisitService/Recommendation";
const envelope = (message: Uint8Array, flags = 0) => {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = flags;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
};
const request = (fields: Partial<RecommendationRequest>) =>
  envelope(toBinary(RecommendationRequestSchema, { $typeName: "recsys.covisit.v1.RecommendationRequest", url: "", limit: 0, userid: "", ...fields }));

interface Answer {
  status: number;
  type: string | undefined;
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  why: string | undefined;
  traced: boolean;
  body: string | undefined;
}

/** One gRPC call on a raw HTTP/2 stream; `abortAfterMs` resets the stream (the client going away). */
function call(body: Buffer, headers: Record<string, string> = {}, abortAfterMs?: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    let head: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (head = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("trailers", (t) => (head = { ...head, ...t }));
    stream.on("close", () => {
      const data = Buffer.concat(chunks);
      const pick = (name: string) => head[name] as string | undefined;
      resolve({
        status: Number(head[":status"] ?? 0),
        type: pick("content-type"),
        grpcStatus: pick("grpc-status"),
        grpcMessage: pick("grpc-message"),
        why: pick("x-why"),
        traced: /^[0-9a-f]{32}$/.test(pick("x-request-id") ?? ""),
        body: data.length > 0 ? toJsonString(RecommendationResponseSchema, fromBinary(RecommendationResponseSchema, data.subarray(5))) : undefined,
      });
    });
    stream.on("error", reject);
    stream.end(body);
    if (abortAfterMs !== undefined) setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), abortAfterMs);
  });
}

/** The same call on both paths: a grpc-encoding the plain path does not take sends it to connect-es (the message is not compressed). */
async function bothWays(body: Buffer, headers: Record<string, string> = {}, reachesImplementation = true) {
  const before = seen.length;
  const plain = await call(body, headers);
  const viaConnect = await call(body, { ...headers, "grpc-encoding": "gzip" });
  expect(seen.length - before).toBe(reachesImplementation ? 2 : 0);
  if (reachesImplementation) {
    expect(seen.at(-2)!.signal.aborted, "the plain path answered").toBe(false);
    expect(seen.at(-1)!.signal.aborted, "connect-es answered").toBe(true);
  }
  return { plain, viaConnect };
}

describe("the plain path for unary gRPC calls", () => {
  it("answers as connect-es does: status, content type, trace header, message, with or without a deadline", async () => {
    for (const headers of [{}, { "grpc-timeout": "5S" }]) {
      const { plain, viaConnect } = await bothWays(request({ url: "https://e.org/a", limit: 3 }), headers);
      expect(plain).toEqual(viaConnect);
      expect(plain).toEqual({
        status: 200,
        type: "application/grpc+proto",
        grpcStatus: "0",
        grpcMessage: undefined,
        why: undefined,
        traced: true,
        body: '{"items":[{"recommendation":"https://e.org/a/next","frequency":"3"}]}',
      });
    }
    const forMe = await bothWays(request({ url: "for-me" }), { "x-user": "u1" });
    expect(forMe.plain).toEqual(forMe.viaConnect);
    expect(forMe.plain.body).toContain('"recommendation":"u1"');
  });

  it("refuses as connect-es does: the implementation's error with its metadata, a bug, a malformed message", async () => {
    const refused = await bothWays(request({ url: "refused" }));
    expect(refused.plain).toEqual(refused.viaConnect);
    expect(refused.plain).toMatchObject({
      grpcStatus: String(Code.InvalidArgument),
      grpcMessage: "url%3A%20refused%20on%20purpose%2C%20100%25",
      why: "a test",
    });
    // A failure the implementation did not mean for the caller keeps its message (hosts, credentials) in the service's log.
    const crash = await bothWays(request({ url: "crash" }));
    expect(crash.plain).toEqual(crash.viaConnect);
    expect(crash.plain).toMatchObject({ grpcStatus: String(Code.Internal), grpcMessage: "internal%20error" });
    const malformed = await bothWays(envelope(Buffer.from([0x0a, 0xff])), {}, false);
    expect(malformed.plain.grpcStatus).toBe(malformed.viaConnect.grpcStatus);
    expect(malformed.plain.grpcStatus).not.toBe("0");
  });

  it("refuses a message over the size limit without calling the implementation, and one that is cut short", async () => {
    const before = seen.length;
    const tooLarge = await call(request({ url: `https://e.org/${"x".repeat(MAX_BYTES)}` }));
    expect(tooLarge.grpcStatus).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(tooLarge.grpcMessage ?? "")).toMatch(/^message size \d+ is larger than configured readMaxBytes 65536$/);
    expect(seen.length).toBe(before);
  });

  it("refuses a unary call with no message or two (Unimplemented), or one cut short (InvalidArgument), as connect-es does", async () => {
    const one = request({ url: "https://e.org/cut" });
    for (const [body, code] of [
      [Buffer.alloc(0), Code.Unimplemented],
      [Buffer.concat([one, one]), Code.Unimplemented],
      [one.subarray(0, one.length - 2), Code.InvalidArgument],
      [one.subarray(0, 3), Code.InvalidArgument],
    ] as const) {
      const { plain, viaConnect } = await bothWays(body, {}, false);
      expect(plain, `${body.length} bytes`).toEqual(viaConnect);
      expect(plain.grpcStatus, `${body.length} bytes`).toBe(String(code));
    }
  });

  it("answers Internal, and stays up, when the implementation's error cannot be written", async () => {
    expect(await call(request({ url: "surrogate" }))).toMatchObject({ status: 200, grpcStatus: String(Code.Internal), grpcMessage: "internal%20error" });
    expect((await call(request({ url: "https://e.org/after" }))).grpcStatus).toBe("0");
  });

  it("gives the implementation the client's address, on both paths", async () => {
    const { plain, viaConnect } = await bothWays(request({ url: "peer" }));
    expect(plain).toEqual(viaConnect);
    expect(plain.body).toBe('{"items":[{"recommendation":"127.0.0.1","frequency":"1"}]}');
  });

  it("aborts the implementation's signal at the deadline (DeadlineExceeded) and when the client goes away", async () => {
    const started = performance.now();
    const late = await call(request({ url: "slow" }), { "grpc-timeout": "50m" });
    expect(late.grpcStatus).toBe(String(Code.DeadlineExceeded));
    expect(performance.now() - started).toBeLessThan(900);
    expect(seen.at(-1)!.signal.aborted).toBe(true);
    // A deadline further off than any timer (about 24.8 days) is no reason to end the call at once.
    for (const far of ["2592000S", "99999999H"]) expect((await call(request({ url: "pause" }), { "grpc-timeout": far })).grpcStatus, far).toBe("0");
    const before = seen.length;
    await call(request({ url: "slow" }), {}, 200);
    await vi.waitFor(() => expect(seen.slice(before).map((s) => s.signal.reason?.code)).toEqual([Code.Canceled]));
  });

  it("serves connect-es's own gRPC client: answers, errors with their metadata, deadlines", async () => {
    const client = createClient(CovisitService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    expect((await client.recommendation({ url: "https://e.org/b", limit: 2 })).items[0]).toMatchObject({ recommendation: "https://e.org/b/next" });
    const err = await client.recommendation({ url: "refused" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: "url: refused on purpose, 100%" });
    expect((err as ConnectError).metadata.get("x-why")).toBe("a test");
    const late = await client.recommendation({ url: "slow" }, { timeoutMs: 50 }).catch((e: unknown) => ConnectError.from(e));
    expect(late).toMatchObject({ code: Code.DeadlineExceeded });
  });
});
