export { answerEach, refusal, type BatchOutcome, type BatchResult } from "./batch.js";
export type { HttpRequest, HttpResponse } from "./http-endpoints.js";
export { MAX_REQUEST_BYTES, PEER_HEADER, startRpcServer, type RpcServer, type RpcServerOptions } from "./rpc-server.js";
export { onShutdown } from "./shutdown.js";
