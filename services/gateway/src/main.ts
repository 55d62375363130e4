import http from "node:http";
import { createClient } from "@connectrpc/connect";
import { hideBackendFailures } from "./backend-errors.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { clientTracing } from "@recsys/tracing";
import { commonEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { connectRedis, CovisitStore, DEFAULT_SEEN_HORIZON_MS } from "@recsys/covisit-store";
import { createLogger } from "@recsys/logging";
import { createPool, schemaFor } from "@recsys/profile/pool";
import { isLoopback, onShutdown, sendServiceToken, startRpcServer } from "@recsys/server";
import { Access, DEFAULT_AUTH_FAILURES_PER_MINUTE, parseApiKeys, sharedLimiters, type RateLimits } from "./access.js";
import { Authenticator } from "./auth.js";
import { corsFor, parseOrigins } from "./cors.js";
import { readingCovisitRedis } from "./covisit-reads.js";
import { createDashboard, guardMetrics } from "./dashboard.js";
import { openApiRoute } from "./openapi-http.js";
import { readingProfilePostgres } from "./profile-reads.js";
import { serveGraphql } from "./graphql-http.js";
import { createGraphql } from "./graphql.js";
import { createGatewayApi, DEFAULT_COALESCING, DEFAULT_TRENDING_WINDOW, gatewayPlainJson, gatewayRoutes } from "./handlers.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    // The gateway is the public edge.
    HOST: z.string().default("0.0.0.0"),
    GATEWAY_PORT: port(8080),
    INGEST_URL: z.string().url().default("http://127.0.0.1:50051"),
    COVISIT_URL: z.string().url().default("http://127.0.0.1:50052"),
    // Recommendation is read from covisit's Redis here (see covisit-reads.ts); by default the one of REDIS_URL. Its user needs
    // read access to covisit's keys. SEEN_HORIZON_MS must be covisit's.
    COVISIT_REDIS_URL: z.string().default(""),
    SEEN_HORIZON_MS: positiveInt(DEFAULT_SEEN_HORIZON_MS),
    PROFILE_URL: z.string().url().default("http://127.0.0.1:50054"),
    // SimilarContent is read here from profile's PostgreSQL (see profile-reads.ts): profile's database, as a role that needs only
    // SELECT on profile's schema (deploy: recsys_reader, which profile's PG_READER_ROLE grants it).
    DATABASE_URL: z.string().min(1).default("postgresql://postgres@127.0.0.1:5432/test"),
    ANALYTICS_URL: z.string().url().default("http://127.0.0.1:50055"),
    // Only the dashboard reads the embedder (its /healthz and /metrics).
    EMBEDDER_URL: z.string().url().default("http://127.0.0.1:50053"),
    GATEWAY_DEADLINE_MS: positiveInt(5_000),
    // Concurrent Recommendation and SimilarContent calls share backend calls: while this many are
    // out, the calls made meanwhile go together in the next, up to GATEWAY_BATCH_MAX.
    GATEWAY_BATCH_MAX: positiveInt(DEFAULT_COALESCING.maxBatch),
    GATEWAY_MAX_OUTSTANDING: positiveInt(DEFAULT_COALESCING.maxOutstanding),
    GATEWAY_RECOMMENDATION_IN_FLIGHT: positiveInt(DEFAULT_COALESCING.recommendationInFlight),
    GATEWAY_SIMILAR_CONTENT_IN_FLIGHT: positiveInt(DEFAULT_COALESCING.similarContentInFlight),
    // Service keys, `key:read,key:write,key:admin,…`; user tokens verified against a secret or a key set.
    // With none of them the gateway is open, which it allows on a loopback HOST only.
    GATEWAY_API_KEYS: z.string().default(""),
    GATEWAY_JWT_SECRET: z.string().default(""),
    GATEWAY_JWKS: z.string().default(""),
    GATEWAY_JWT_ISSUER: z.string().default(""),
    GATEWAY_JWT_AUDIENCE: z.string().default(""),
    // Per client (service key, or peer address on an open gateway) and per user token, shared by replicas through Redis.
    GATEWAY_QUERIES_PER_MINUTE: positiveInt(600_000),
    GATEWAY_MUTATIONS_PER_MINUTE: positiveInt(60_000),
    GATEWAY_USER_QUERIES_PER_MINUTE: positiveInt(600),
    GATEWAY_USER_MUTATIONS_PER_MINUTE: positiveInt(600),
    // Per address, in each gateway process: past it, that minute's other calls from there are refused before any check.
    GATEWAY_AUTH_FAILURES_PER_MINUTE: positiveInt(DEFAULT_AUTH_FAILURES_PER_MINUTE),
    // Origins whose pages may call the gateway from a browser; none by default.
    GATEWAY_CORS_ORIGINS: z.string().default(""),
    // GraphiQL at /graphiql: by default only on a loopback HOST.
    GATEWAY_GRAPHIQL: z.enum(["on", "off", "loopback"]).default("loopback"),
  }),
);
const logger = createLogger("gateway");
// Backends are asked with the Connect protocol, binary protobuf, over kept-alive HTTP/1.1
// connections, uncompressed: on this loopback the gRPC/HTTP/2 client cost more CPU a call, and
// compressing answers only spent CPU (Recommendation at 1,000 requests/s: p99 25 ms this way, 36 ms
// over gRPC; see the README's Performance section).
const backendAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const transport = (backend: string, baseUrl: string) =>
  createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: true,
    nodeOptions: { agent: backendAgent },
    acceptCompression: [],
    interceptors: [hideBackendFailures(backend, logger), clientTracing, ...sendServiceToken(config.SERVICE_TOKEN || undefined)],
  });
// Each command goes out as it is sent, without ioredis' auto-pipelining: its per-tick pipelines outlived two young-generation
// collections and were promoted, so each scavenge copied ~650 KB and paused the loop ~3 ms (1 ms without); at 1,000
// Recommendation/s the gateway's p99 went 4.4-4.8 → 2.6-3.3 ms and its CPU 430-475 → 351-373 µs a request.
const redisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1 };
const redis = connectRedis(config.REDIS_URL, redisOptions, config.REDIS_CLUSTER);
redis.on("error", (err) => logger.warn({ err: String(err) }, "redis (rate limits counted per replica meanwhile)"));
const covisitRedis =
  config.COVISIT_REDIS_URL && config.COVISIT_REDIS_URL !== config.REDIS_URL
    ? connectRedis(config.COVISIT_REDIS_URL, redisOptions, config.REDIS_CLUSTER)
    : redis;
if (covisitRedis !== redis) covisitRedis.on("error", (err) => logger.warn({ err: String(err) }, "covisit's redis (Recommendation Unavailable meanwhile)"));
// One connection per SimilarContent batch in flight; a statement may take the gateway's deadline, and the client gives up on a
// server that stopped answering a second after it (Unavailable), so a stalled connection cannot hold the queries back.
const profilePool = createPool({
  databaseUrl: config.DATABASE_URL,
  schema: schemaFor(config.RECSYS_NAMESPACE),
  max: config.GATEWAY_SIMILAR_CONTENT_IN_FLIGHT,
  statementTimeoutMs: config.GATEWAY_DEADLINE_MS,
  queryTimeoutMs: config.GATEWAY_DEADLINE_MS + 1_000,
  logger,
});
const backends = {
  analytics: createClient(AnalyticsService, transport("analytics", config.ANALYTICS_URL)),
  covisit: readingCovisitRedis(
    createClient(CovisitService, transport("covisit", config.COVISIT_URL)),
    CovisitStore.reader(covisitRedis, config.RECSYS_NAMESPACE, config.SEEN_HORIZON_MS, config.COVISIT_SHARDS),
    logger,
  ),
  ingest: createClient(IngestService, transport("ingest", config.INGEST_URL)),
  profile: readingProfilePostgres(createClient(ProfileService, transport("profile", config.PROFILE_URL)), profilePool, logger),
};
const api = createGatewayApi(backends, logger, config.GATEWAY_DEADLINE_MS, {
  maxBatch: config.GATEWAY_BATCH_MAX,
  maxOutstanding: config.GATEWAY_MAX_OUTSTANDING,
  recommendationInFlight: config.GATEWAY_RECOMMENDATION_IN_FLIGHT,
  similarContentInFlight: config.GATEWAY_SIMILAR_CONTENT_IN_FLIGHT,
});
const authenticator = new Authenticator(parseApiKeys(config.GATEWAY_API_KEYS), {
  secret: config.GATEWAY_JWT_SECRET || undefined,
  jwks: config.GATEWAY_JWKS || undefined,
  issuer: config.GATEWAY_JWT_ISSUER || undefined,
  audience: config.GATEWAY_JWT_AUDIENCE || undefined,
});
if (authenticator.open) {
  if (!isLoopback(config.HOST)) {
    logger.fatal(
      { host: config.HOST },
      "refusing to serve without credentials on a non-loopback HOST: set GATEWAY_API_KEYS (key:read,key:write,…) and/or GATEWAY_JWT_SECRET or GATEWAY_JWKS, or listen on HOST=127.0.0.1",
    );
    process.exit(78);
  }
  logger.warn({ host: config.HOST }, "no credentials configured: the gateway is open to anyone who can reach this loopback address");
}
const limits: RateLimits = {
  reads: config.GATEWAY_QUERIES_PER_MINUTE,
  writes: config.GATEWAY_MUTATIONS_PER_MINUTE,
  userReads: config.GATEWAY_USER_QUERIES_PER_MINUTE,
  userWrites: config.GATEWAY_USER_MUTATIONS_PER_MINUTE,
};
const access = new Access(authenticator, limits, sharedLimiters(redis, config.RECSYS_NAMESPACE, limits), logger, config.GATEWAY_AUTH_FAILURES_PER_MINUTE);
// The Connect JSON routes' OpenAPI document, public as the GraphQL schema is.
const openApi = openApiRoute();
const dashboard = createDashboard({
  backends: { ingest: config.INGEST_URL, covisit: config.COVISIT_URL, embedder: config.EMBEDDER_URL, profile: config.PROFILE_URL },
  access,
  logger,
  async analytics() {
    const call = { timeoutMs: 1_000 };
    const trending = await backends.analytics.trending({ window: DEFAULT_TRENDING_WINDOW, limit: 5 }, call);
    const mix = trending.from ? await backends.analytics.eventMix({ from: trending.from, to: trending.to }, call) : { events: [] };
    return {
      from: trending.from,
      to: trending.to,
      events: mix.events.map((e) => ({ event: e.event, clicks: Number(e.clicks) })),
      trending: trending.urls.map((u) => ({ url: u.url, clicks: Number(u.clicks) })),
    };
  },
});
const graphql = serveGraphql(createGraphql(api, logger, access), logger, {
  graphiql: config.GATEWAY_GRAPHIQL === "on" || (config.GATEWAY_GRAPHIQL === "loopback" && isLoopback(config.HOST)),
});
const cors = corsFor(parseOrigins(config.GATEWAY_CORS_ORIGINS));
// Off loopback the process's metrics are the dashboard's data: they need a read key too.
const metrics = isLoopback(config.HOST) ? () => false : guardMetrics(access);

const server = await startRpcServer({
  name: "gateway",
  host: config.HOST,
  port: config.GATEWAY_PORT,
  routes: gatewayRoutes(api, access),
  plainJson: gatewayPlainJson(api, access),
  http: (req, res) => cors(req, res) || metrics(req, res) || openApi(req, res) || dashboard.http(req, res) || graphql(req, res),
  healthy: async () => {
    const probes = [config.COVISIT_URL, config.INGEST_URL, config.PROFILE_URL].map((u) =>
      fetch(new URL("/healthz", u), { signal: AbortSignal.timeout(1_000) }).then(
        (r) => r.ok,
        () => false,
      ),
    );
    return covisitRedis.status === "ready" && (await Promise.all(probes)).every(Boolean);
  },
  logger,
});
onShutdown(logger, async () => {
  dashboard.close();
  await server.close();
  redis.disconnect();
  if (covisitRedis !== redis) covisitRedis.disconnect();
  await profilePool.end();
});
