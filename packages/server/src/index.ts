import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "@recsys/logging";
import { registry, rpcDuration, setServiceName } from "@recsys/metrics";
import { serverTracing } from "@recsys/tracing";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@recsys/contracts/grpc/health/v1/health";

export const MAX_REQUEST_BYTES = 1024 * 1024;
/** The request header holding the caller's address, as the server saw the connection. */
export const PEER_HEADER = "x-recsys-peer";

export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface RpcServerOptions {
  name: string;
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  /** True while every dependency the service needs is reachable. */
  healthy: () => boolean | Promise<boolean>;
  /** What GET /healthz lists besides the status: limits reached, a store failing (one line each). */
  problems?: () => string[];
  logger: Logger;
  /** Largest request body accepted; larger ones get ResourceExhausted. Default 1 MiB. */
  maxRequestBytes?: number;
  /**
   * Plain HTTP next to the RPCs (e.g. a GraphQL endpoint): sees every HTTP/1.1 and HTTP/2 request
   * first and returns true when it has taken it; the rest go to /healthz and Connect as before.
   */
  http?: (req: HttpRequest, res: HttpResponse) => boolean;
}

export interface RpcServer {
  port: number;
  close(): Promise<void>;
}

/**
 * One port that speaks gRPC over h2c (prior knowledge) and the Connect protocol over HTTP/1.1,
 * so that gRPC clients and `curl` both work. The first bytes of a connection pick the server:
 * every HTTP/2 connection opens with the preface "PRI * HTTP/2.0".
 */
export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  setServiceName(opts.name);
  const maxBytes = opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const connect = connectNodeAdapter({
    routes: (router) => {
      opts.routes(router);
      healthRoutes(router, opts.healthy);
    },
    readMaxBytes: maxBytes,
    interceptors: [serverTracing, timeRpcs, logRpcs(opts.logger)],
  });
  const handle = (req: HttpRequest, res: HttpResponse) => {
    // Handlers see headers, not sockets: the peer address travels as a header no client can set.
    req.headers[PEER_HEADER] = req.socket?.remoteAddress ?? "";
    if (opts.http?.(req, res)) return;
    if (req.url === "/metrics" && req.method === "GET") {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(err));
        },
      );
      return;
    }
    if (req.url === "/healthz" && req.method === "GET") {
      void Promise.resolve(opts.healthy()).then(
        (ok) => {
          const problems = opts.problems?.() ?? [];
          res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
          res.end(JSON.stringify({ status: ok ? "SERVING" : "NOT_SERVING", service: opts.name, ...(problems.length ? { problems } : {}) }));
        },
        () => {
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ status: "NOT_SERVING", service: opts.name }));
        },
      );
      return;
    }
    if (req instanceof http.IncomingMessage) {
      // A request refused before its body was read in full (over the size limit) leaves the rest of
      // the body on the connection, where it would swallow the client's next request: close it.
      const socket = req.socket;
      res.once("finish", () => {
        if (!req.complete && !socket.destroyed) socket.end();
      });
    }
    (connect as (a: typeof req, b: typeof res) => void)(req, res);
  };

  const h1 = http.createServer(handle);
  h1.keepAliveTimeout = 65_000;
  const h2 = http2.createServer(handle);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  const front = net.createServer((socket) => {
    // Small RPC answers go out at once: with Nagle's algorithm an HTTP/2 frame written after a
    // previous one waits for the peer's delayed ACK, about 40 ms per call.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 3) return;
      socket.off("data", onData);
      if (head.subarray(0, 3).toString("latin1") === "PRI") {
        // http2 reads the native handle directly and would miss bytes put back with unshift.
        h2.emit("connection", new ReplayedSocket(socket, head));
      } else {
        socket.pause();
        socket.unshift(head);
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(opts.port, opts.host, () => resolve());
  });
  const address = front.address() as net.AddressInfo;
  opts.logger.info({ host: opts.host, port: address.port }, "listening (gRPC h2c, Connect HTTP/1.1 and HTTP/2)");

  return {
    port: address.port,
    async close() {
      await new Promise<void>((resolve) => {
        front.close(() => resolve());
        for (const s of sessions) s.close();
        h1.closeIdleConnections();
        // Connections still busy after a grace period are cut; clients retry unacked work.
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2_000).unref();
      });
    },
  };
}

const WATCH_INTERVAL_MS = 1_000;

/**
 * grpc.health.v1.Health for the whole process: "" and every service this port serves answer
 * SERVING while `healthy()` holds, NOT_SERVING otherwise; Watch sends each change as it happens
 * (checked every second) until the client goes away. Other names are unknown.
 */
function healthRoutes(router: ConnectRouter, healthy: RpcServerOptions["healthy"]) {
  const served = new Set(["", ...router.handlers.map((h) => h.service.typeName)]);
  const status = async () => ((await Promise.resolve(healthy()).catch(() => false)) ? Status.SERVING : Status.NOT_SERVING);
  router.service(Health, {
    async check(req) {
      if (!served.has(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: await status() };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const now = served.has(req.service) ? await status() : Status.SERVICE_UNKNOWN;
        if (now !== last) yield { status: (last = now) };
        await new Promise((r) => {
          const t = setTimeout(r, WATCH_INTERVAL_MS);
          ctx.signal.addEventListener("abort", () => (clearTimeout(t), r(undefined)), { once: true });
        });
      }
    },
  });
}

/** What the single RPC gave one request of a batch RPC: a response, or the code and message it refused it with. */
export type BatchOutcome<R> = { case: "response"; value: R } | { case: "refused"; value: { code: number; message: string } };

/** One request of a batch RPC, answered as its single RPC would have answered it. */
export type BatchResult<R> = { outcome: BatchOutcome<R> };

/** The answer, in a batch RPC, for a request the single RPC would have failed with `err`. */
export function refusal(err: unknown): BatchResult<never> {
  const ce = ConnectError.from(err);
  return { outcome: { case: "refused", value: { code: ce.code, message: ce.rawMessage } } };
}

/**
 * Answers every request of a batch RPC with what the single RPC would have given it: a response,
 * or the code and message it would have failed with. One refused request does not fail the others.
 */
export function answerEach<Q, R>(requests: Q[], single: (req: Q) => Promise<R>): Promise<Array<BatchResult<R>>> {
  return Promise.all(requests.map((req) => single(req).then((value): BatchResult<R> => ({ outcome: { case: "response", value } }), refusal)));
}

/** Every RPC's duration by method and status code (the code's name, "OK" on success). */
const timeRpcs: Interceptor = (next) => async (req) => {
  const end = rpcDuration.startTimer({ method: `${req.service.typeName}/${req.method.name}` });
  try {
    const res = await next(req);
    end({ code: "OK" });
    return res;
  } catch (err) {
    end({ code: Code[ConnectError.from(err).code] });
    throw err;
  }
};

/** One debug line per RPC, inside its span: method, code and milliseconds, with the trace id. */
const logRpcs =
  (logger: Logger): Interceptor =>
  (next) =>
  async (req) => {
    const t0 = performance.now();
    let code = "OK";
    try {
      return await next(req);
    } catch (err) {
      code = Code[ConnectError.from(err).code];
      throw err;
    } finally {
      logger.debug({ method: `${req.service.typeName}/${req.method.name}`, code, ms: Math.round((performance.now() - t0) * 10) / 10 }, "rpc");
    }
  };

/** A socket whose first bytes were already read: replays them, then passes everything through. */
class ReplayedSocket extends Duplex {
  constructor(
    private readonly socket: net.Socket,
    head: Buffer,
  ) {
    super();
    this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (err) => this.destroy(err));
  }
  get remoteAddress() {
    return this.socket.remoteAddress;
  }
  get remotePort() {
    return this.socket.remotePort;
  }
  override _read() {
    this.socket.resume();
  }
  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void) {
    this.socket.write(chunk, encoding, callback);
  }
  override _final(callback: (err?: Error | null) => void) {
    this.socket.end(callback);
  }
  override _destroy(err: Error | null, callback: (err?: Error | null) => void) {
    this.socket.destroy(err ?? undefined);
    callback(err);
  }
}

/**
 * Runs `stop` once on SIGTERM/SIGINT, then exits. A second signal exits at once.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error("shutdown took too long, exiting");
      process.exit(1);
    }, 10_000);
    deadline.unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}
