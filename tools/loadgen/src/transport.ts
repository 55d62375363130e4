import { createGrpcTransport } from "@connectrpc/connect-node";
import { sendServiceToken } from "@recsys/server";

/** gRPC to one of the services, with the service token from SERVICE_TOKEN when the services require one. */
export const serviceTransport = (baseUrl: string) => createGrpcTransport({ baseUrl, interceptors: sendServiceToken(process.env.SERVICE_TOKEN || undefined) });
