import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CovisitService, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRpcServer, type RpcServer } from "./rpc-server.js";

// One port, two protocols: the first bytes pick HTTP/2 (gRPC) or HTTP/1.1 (Connect, health, metrics). The HTTP/2 session reads
// the socket itself once the sniffer has put the first bytes back, however those bytes were split.
const echo = (req: RecommendationRequest) => ({ items: [{ recommendation: req.url, frequency: BigInt(req.url.length) }] });

let server: RpcServer;
beforeAll(async () => {
  server = await startRpcServer({
    name: "sniffing-test",
    host: "127.0.0.1",
    port: 0,
    routes: (router) => router.service(CovisitService, { recommendation: echo }),
    // A handler of its own, as the gateway's GraphQL: it answers once it has read the whole body.
    http: (req, res) => {
      if (req.url !== "/own") return false;
      req.resume();
      req.once("end", () => res.end("read\n"));
      return true;
    },
    healthy: async () => true,
    logger: createLogger("sniffing-test"),
    maxRequestBytes: 4 * 1024 * 1024,
  });
});
afterAll(() => server.close());

/** A connection that sends its first `split` bytes one at a time, 5 ms apart, then the rest as it comes. */
function tricklingConnection(port: number, split: number): net.Socket {
  const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
  const write = socket.write.bind(socket) as (chunk: Buffer, cb?: (err?: Error | null) => void) => boolean;
  let sent = 0;
  let chain: Promise<unknown> = Promise.resolve();
  socket.write = ((chunk: Buffer | string, ...rest: unknown[]) => {
    const buf = Buffer.from(chunk);
    const cb = rest.find((r) => typeof r === "function") as ((err?: Error | null) => void) | undefined;
    chain = chain.then(async () => {
      for (let i = 0; i < buf.length; ) {
        const n = sent < split ? 1 : buf.length - i;
        write(buf.subarray(i, i + n));
        i += n;
        sent += n;
        if (sent <= split) await sleep(5);
      }
      cb?.();
    });
    return true;
  }) as typeof socket.write;
  return socket;
}

describe("the protocol sniffer", () => {
  it("hands an HTTP/2 connection to gRPC whole, even when its preface comes a byte at a time", async () => {
    const transport = createGrpcTransport({
      baseUrl: `http://127.0.0.1:${server.port}`,
      nodeOptions: { createConnection: () => tricklingConnection(server.port, 30) },
    });
    const covisit = createClient(CovisitService, transport);
    const res = await covisit.recommendation({ url: "https://e.org/a" });
    expect(res.items.map((i) => [i.recommendation, i.frequency])).toEqual([["https://e.org/a", 15n]]);
  });

  it("carries calls larger than HTTP/2's first window on one session, in order of their answers", async () => {
    const covisit = createClient(CovisitService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    const urls = Array.from({ length: 8 }, (_, k) => `https://e.org/${String(k).repeat(200_000)}`);
    const answers = await Promise.all(urls.map((url) => covisit.recommendation({ url })));
    expect(answers.map((a) => a.items[0]!.recommendation)).toEqual(urls);
  });

  it("serves HTTP/1.1 on the same port", async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/recsys.covisit.v1.CovisitService/Recommendation`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url: "https://e.org/b" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ items: [{ recommendation: "https://e.org/b", frequency: "15" }] });
  });

  it("refuses a request whose Host or :authority is no host (400), and serves on", async () => {
    const health = `{"service":""}`;
    const check = (head: string) =>
      `POST /grpc.health.v1.Health/Check ${head}\r\nContent-Type: application/json\r\nContent-Length: ${health.length}\r\n\r\n${health}`;
    expect(await firstLine(server.port, check("HTTP/1.1\r\nHost: a b"))).toBe("HTTP/1.1 400 Bad Request");
    expect(await firstLine(server.port, check("HTTP/1.0"))).toBe("HTTP/1.1 400 Bad Request");
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      // grpc-encoding sends the call to connect-es, past the plain path.
      const stream = session.request({
        ":method": "POST",
        ":path": "/recsys.covisit.v1.CovisitService/Recommendation",
        ":authority": "x:99999",
        "content-type": "application/grpc",
        "grpc-encoding": "gzip",
      });
      const status = new Promise((resolve) => stream.on("response", (h) => resolve(h[":status"])));
      stream.resume();
      stream.end(Buffer.alloc(5));
      expect(await status).toBe(400);
    } finally {
      session.close();
    }
    expect(await firstLine(server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).toBe("HTTP/1.1 200 OK");
  });

  it("closes a request trickled in: headers after 10 s, a body after 30 s, over HTTP/1.1 and HTTP/2, to an RPC or its own handler (408)", async () => {
    const [headers, body, h2, own] = await Promise.all([
      trickled(server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n", "X-Slow: 1\r\n".repeat(20)),
      trickled(
        server.port,
        "POST /recsys.covisit.v1.CovisitService/Recommendation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        " ".repeat(100),
      ),
      // An envelope that announces 100 bytes of message, which then come one at a time.
      trickledH2(server.port, "/recsys.covisit.v1.CovisitService/Recommendation", "application/grpc", Buffer.of(0, 0, 0, 0, 100)),
      trickledH2(server.port, "/own", "application/json", Buffer.from("{")),
    ]);
    expect(headers.answer).toBe("HTTP/1.1 408 Request Timeout");
    expect(headers.afterMs).toBeGreaterThan(9_500);
    expect(headers.afterMs).toBeLessThan(13_000);
    expect(body.answer).toBe("HTTP/1.1 408 Request Timeout");
    expect(h2.status).toBe(408);
    expect(own.status).toBe(408);
    for (const t of [body.afterMs, h2.afterMs, own.afterMs]) {
      expect(t).toBeGreaterThan(29_500);
      expect(t).toBeLessThan(33_000);
    }
  }, 45_000);
});

/** When a connection that trickles `text` after `head` (one byte every 2 s) was closed, and the first line of the answer. */
function trickled(port: number, head: string, text: string): Promise<{ afterMs: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect({ port, host: "127.0.0.1" }, () => socket.write(head));
    let answer = "";
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < text.length && !socket.destroyed) socket.write(text[sent++]!);
    }, 2_000);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("close", () => {
      clearInterval(timer);
      resolve({ afterMs: performance.now() - started, answer: answer.split("\r\n")[0] ?? "" });
    });
    socket.on("error", reject);
  });
}

/** An HTTP/2 POST whose body is `first`, then one byte every 2 s: when its answer came, and its status. */
function trickledH2(port: number, path: string, contentType: string, first: Buffer): Promise<{ afterMs: number; status: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": contentType });
    stream.write(first);
    const timer = setInterval(() => {
      if (!stream.destroyed) stream.write(Buffer.of(0));
    }, 2_000);
    stream.on("error", () => undefined);
    stream.on("response", (h) => {
      clearInterval(timer);
      resolve({ afterMs: performance.now() - started, status: Number(h[":status"]) });
      session.destroy();
    });
  });
}

/** Sends `text` on a connection of its own and gives the first line of the answer, "" if there was none. */
function firstLine(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      answer += chunk;
      if (answer.includes("\r\n")) socket.destroy();
    });
    socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
    socket.on("error", reject);
    socket.end(text);
  });
}
