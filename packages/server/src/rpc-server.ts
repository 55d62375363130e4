import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "@recsys/logging";
import { setServiceName } from "@recsys/metrics";
import { serverTracing } from "@recsys/tracing";
import { healthRoutes, type Healthy } from "./grpc-health.js";
import { reflectionRoutes } from "./grpc-reflection.js";
import { serveHealthz, serveMetrics, serveMetricsJson, type HttpRequest, type HttpResponse } from "./http-endpoints.js";
import { logRpcs, requireServiceToken, timeRpcs } from "./interceptors.js";
import { plainGrpcCalls } from "./plain-grpc.js";
import { plainJsonCalls, type PlainJsonRoute } from "./plain-json.js";
import { protocolSniffer, sessionPeer } from "./protocol-sniffing.js";
import { recordingUnaryRoutes, type UnaryRoute } from "./unary-routes.js";

export const MAX_REQUEST_BYTES = 1024 * 1024;

/** How often Node looks for HTTP/1 requests past their headers or request timeout (its default, 30 s, would let them run 30 s over). */
const CONNECTIONS_CHECKING_MS = 1_000;

/**
 * A request refused before any handler: a plain-text answer, then, over HTTP/2, a reset with NO_ERROR, which asks the client to
 * stop sending the rest of its request (RFC 9113, 8.1); the stream or connection cut when an answer has begun.
 */
function refuse(res: HttpResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain", "content-length": String(Buffer.byteLength(text)) });
  res.end(text, () => {
    if (res instanceof http2.Http2ServerResponse) res.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  });
}

/** The request header holding the caller's address, as the server saw the connection. */
export const PEER_HEADER = "x-recsys-peer";

export interface RpcServerOptions {
  name: string;
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  /** True while every dependency the service needs is reachable. */
  healthy: Healthy;
  /** What GET /healthz lists besides the status: limits reached, a store failing (one line each). */
  problems?: () => string[];
  logger: Logger;
  /** Largest request body accepted; larger ones get ResourceExhausted. Default 1 MiB. */
  maxRequestBytes?: number;
  /**
   * When set, every RPC but grpc.health.v1.Health needs `authorization: Bearer <serviceToken>`
   * (Unauthenticated otherwise): the credential services share between them.
   */
  serviceToken?: string;
  /** Limits on connections and how long they may idle; production defaults in SERVER_LIMITS. */
  limits?: Partial<ServerLimits>;
  /**
   * Plain HTTP next to the RPCs (e.g. a GraphQL endpoint): sees every HTTP/1.1 and HTTP/2 request
   * first and returns true when it has taken it; the rest go to /healthz and Connect as before.
   */
  http?: (req: HttpRequest, res: HttpResponse) => boolean;
  /**
   * Hot unary methods (also registered by `routes`) whose plainest calls skip connect-es's per-request machinery: Connect JSON
   * over HTTP/1.1, without compression or a deadline (see plain-json.ts). Same interceptors, answers and errors.
   */
  plainJson?: PlainJsonRoute[];
}

export interface ServerLimits {
  /** Open connections at most; more are closed as they arrive. */
  maxConnections: number;
  /** A new connection must send its first bytes, and a request all its headers, within this. */
  headersTimeoutMs: number;
  /** A request must arrive whole within this. */
  requestTimeoutMs: number;
  /** A kept-alive HTTP/1.1 connection or an HTTP/2 session with nothing to do is closed after this. */
  idleTimeoutMs: number;
  /** Concurrent streams per HTTP/2 connection. */
  maxConcurrentStreams: number;
}

/** Slow or idle clients cannot hold a server: every wait has an end. */
export const SERVER_LIMITS: ServerLimits = {
  maxConnections: 4096,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  // Longer than the 60 s idle timeout of common load balancers, so that they close first.
  idleTimeoutMs: 65_000,
  maxConcurrentStreams: 256,
};

/** Health is probed at most once a second, however many checks and Watch streams ask. */
export const HEALTH_CACHE_MS = 1_000;

/** `probe`'s answer, reused for `ms`: concurrent askers share one probe. */
export function cachedFor(ms: number, probe: Healthy): Healthy {
  let last: { at: number; answer: Promise<boolean> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ms) last = { at: now, answer: Promise.resolve(probe()).catch(() => false) };
    return last.answer;
  };
}

export interface RpcServer {
  port: number;
  close(): Promise<void>;
}

/**
 * One port that speaks gRPC over h2c (prior knowledge) and the Connect protocol over HTTP/1.1, so that gRPC clients and `curl` both work.
 * The first bytes of a connection pick the server: every HTTP/2 connection opens with the preface "PRI * HTTP/2.0".
 */
export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  setServiceName(opts.name);
  const maxBytes = opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
  const healthy = cachedFor(HEALTH_CACHE_MS, opts.healthy);
  const interceptors = [serverTracing, timeRpcs, logRpcs(opts.logger), ...(opts.serviceToken ? [requireServiceToken(opts.serviceToken)] : [])];
  // Every unary method, for the plain gRPC path: the services' and the health check's.
  const unary: UnaryRoute[] = [];
  // The streaming methods' paths: their requests last as long as their streams, by design.
  const streamingPaths = new Set<string>();
  const connect = connectNodeAdapter({
    routes: (router) => {
      const recording = recordingUnaryRoutes(router, unary);
      opts.routes(recording);
      healthRoutes(recording, healthy);
      // Last: it lists what is registered before it.
      reflectionRoutes(router);
      for (const h of router.handlers) if (h.method.methodKind !== "unary") streamingPaths.add(h.requestPath);
    },
    readMaxBytes: maxBytes,
    interceptors,
  });
  const plain = plainJsonCalls(opts.plainJson ?? [], interceptors, maxBytes);
  const plainGrpc = plainGrpcCalls(unary, interceptors, maxBytes);
  const handle = (req: HttpRequest, res: HttpResponse) => {
    // Handlers see headers, not sockets: the peer address travels as a header no client can set.
    req.headers[PEER_HEADER] = (req instanceof http2.Http2ServerRequest ? sessionPeer(req.stream.session) : req.socket?.remoteAddress) ?? "";
    // HTTP/2 has no request timeout of its own: a body trickled a byte at a time held its stream (and, 256 of them, its
    // connection) for as long as the trickle lasted, a unary call's as much as a request to `opts.http` (the gateway's GraphQL).
    // Streaming calls last as long as their streams, by design.
    if (req instanceof http2.Http2ServerRequest && !req.stream.endAfterHeaders && !req.complete && !streamingPaths.has(req.url)) {
      const timer = setTimeout(() => {
        if (!req.complete) refuse(res, 408, "request timeout\n");
      }, limits.requestTimeoutMs);
      timer.unref();
      req.stream.once("close", () => clearTimeout(timer));
    }
    if (opts.http?.(req, res)) return;
    if (req.url === "/metrics" && req.method === "GET") return serveMetrics(res);
    if (req.url === "/metrics.json" && req.method === "GET") return serveMetricsJson(res);
    if (req.url === "/healthz" && req.method === "GET") return serveHealthz(res, opts.name, healthy, opts.problems);
    if (req instanceof http.IncomingMessage) {
      // A request refused before its body was read in full (over the size limit) leaves the rest of
      // the body on the connection, where it would swallow the client's next request: close it.
      const socket = req.socket;
      res.once("finish", () => {
        if (!req.complete && !socket.destroyed) socket.end();
      });
    }
    if (req instanceof http.IncomingMessage && plain(req, res as http.ServerResponse)) return;
    if (req instanceof http2.Http2ServerRequest && plainGrpc(req, res as http2.Http2ServerResponse)) return;
    try {
      (connect as (a: typeof req, b: typeof res) => void)(req, res);
    } catch (err) {
      // connect-node makes the request's URL from its Host (or :authority) first thing, and throws on one that is no host
      // ("a b", a port past 65535, none at all over HTTP/1.0): uncaught, that ended the process.
      opts.logger.debug({ err: String(err), url: req.url }, "request refused: malformed");
      refuse(res, 400, "malformed request\n");
    }
  };

  const limits = { ...SERVER_LIMITS, ...opts.limits };
  const h1 = http.createServer(
    { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: CONNECTIONS_CHECKING_MS },
    handle,
  );
  // Node checks headersTimeout and requestTimeout only on a server that has told of listening; this one never listens itself
  // (the sniffer hands it its connections), so headers or a body trickled a byte at a time held a connection for ever, and 4,096
  // such connections shut every other client out.
  h1.emit("listening");
  h1.keepAliveTimeout = limits.idleTimeoutMs;
  h1.timeout = limits.idleTimeoutMs;
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: limits.maxConcurrentStreams } }, handle);
  h2.setTimeout(limits.idleTimeoutMs);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  const front = protocolSniffer(h1, h2, sockets, limits.headersTimeoutMs);
  front.maxConnections = limits.maxConnections;

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
        // Closes its idle connections and stops its timeout checks; it never listened, so the callback only hears that.
        h1.close(() => undefined);
        // Connections still busy after a grace period are cut; clients retry unacked work.
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2_000).unref();
      });
    },
  };
}
