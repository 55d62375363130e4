import http from "node:http";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { clientTracing } from "@recsys/tracing";
import { commonEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { createLogger } from "@recsys/logging";
import { onShutdown, startRpcServer } from "@recsys/server";
import { Access, parseApiKeys } from "./access.js";
import { createDashboard } from "./dashboard.js";
import { serveGraphql } from "./graphql-http.js";
import { createGraphql } from "./graphql.js";
import { createGatewayApi, DEFAULT_COALESCING, gatewayRoutes } from "./handlers.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    // The gateway is the public edge.
    HOST: z.string().default("0.0.0.0"),
    GATEWAY_PORT: port(8080),
    INGEST_URL: z.string().url().default("http://127.0.0.1:50051"),
    COVISIT_URL: z.string().url().default("http://127.0.0.1:50052"),
    PROFILE_URL: z.string().url().default("http://127.0.0.1:50054"),
    // Only the dashboard reads the embedder (its /healthz and /metrics).
    EMBEDDER_URL: z.string().url().default("http://127.0.0.1:50053"),
    GATEWAY_DEADLINE_MS: positiveInt(5_000),
    // Concurrent Recommendation and SimilarContent calls share backend calls: while this many are
    // out, the calls made meanwhile go together in the next, up to GATEWAY_BATCH_MAX.
    GATEWAY_BATCH_MAX: positiveInt(DEFAULT_COALESCING.maxBatch),
    GATEWAY_RECOMMENDATION_IN_FLIGHT: positiveInt(DEFAULT_COALESCING.recommendationInFlight),
    GATEWAY_SIMILAR_CONTENT_IN_FLIGHT: positiveInt(DEFAULT_COALESCING.similarContentInFlight),
    // Empty: no keys needed. Else `key:read,key:write,…`; mutations need a write key.
    GATEWAY_API_KEYS: z.string().default(""),
    GATEWAY_MUTATIONS_PER_MINUTE: positiveInt(60_000),
  }),
);
const logger = createLogger("gateway");
// Backends are asked with the Connect protocol, binary protobuf, over kept-alive HTTP/1.1
// connections, uncompressed: on this loopback the gRPC/HTTP/2 client cost more CPU a call, and
// compressing answers only spent CPU (Recommendation at 1,000 requests/s: p99 25 ms this way, 36 ms
// over gRPC; see the README's Performance section).
const backendAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const transport = (baseUrl: string) =>
  createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: true,
    nodeOptions: { agent: backendAgent },
    acceptCompression: [],
    interceptors: [clientTracing],
  });
const backends = {
  covisit: createClient(CovisitService, transport(config.COVISIT_URL)),
  ingest: createClient(IngestService, transport(config.INGEST_URL)),
  profile: createClient(ProfileService, transport(config.PROFILE_URL)),
};
const api = createGatewayApi(backends, logger, config.GATEWAY_DEADLINE_MS, {
  maxBatch: config.GATEWAY_BATCH_MAX,
  recommendationInFlight: config.GATEWAY_RECOMMENDATION_IN_FLIGHT,
  similarContentInFlight: config.GATEWAY_SIMILAR_CONTENT_IN_FLIGHT,
});
const access = new Access(parseApiKeys(config.GATEWAY_API_KEYS), config.GATEWAY_MUTATIONS_PER_MINUTE, logger);
const dashboard = createDashboard({
  backends: { ingest: config.INGEST_URL, covisit: config.COVISIT_URL, embedder: config.EMBEDDER_URL, profile: config.PROFILE_URL },
  access,
  logger,
});
const graphql = serveGraphql(createGraphql(api, logger, access), logger);

const server = await startRpcServer({
  name: "gateway",
  host: config.HOST,
  port: config.GATEWAY_PORT,
  routes: gatewayRoutes(api, access),
  http: (req, res) => dashboard.http(req, res) || graphql(req, res),
  healthy: async () => {
    const probes = [config.COVISIT_URL, config.INGEST_URL, config.PROFILE_URL].map((u) =>
      fetch(new URL("/healthz", u), { signal: AbortSignal.timeout(1_000) }).then(
        (r) => r.ok,
        () => false,
      ),
    );
    return (await Promise.all(probes)).every(Boolean);
  },
  logger,
});
onShutdown(logger, () => {
  dashboard.close();
  return server.close();
});
