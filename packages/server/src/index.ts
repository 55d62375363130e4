export { answerEach, refusal, type BatchOutcome, type BatchResult } from "./batch.js";
export { serveMetrics, serveMetricsJson, type HttpRequest, type HttpResponse } from "./http-endpoints.js";
export { sendServiceToken } from "./interceptors.js";
export { isLoopback, serviceTokenFor } from "./service-token.js";
export { MAX_REQUEST_BYTES, PEER_HEADER, SERVER_LIMITS, startRpcServer, type RpcServer, type RpcServerOptions, type ServerLimits } from "./rpc-server.js";
export { type PlainJsonRoute } from "./plain-json.js";
export { onShutdown } from "./shutdown.js";
