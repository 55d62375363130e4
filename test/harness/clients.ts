import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { ArchiveService } from "@recsys/contracts/archive/v1/archive";
import { sendServiceToken } from "@recsys/server";
import type { TestStack } from "./stack.js";

/** Clients as a user would have them: Connect over HTTP/1.1 at the gateway, gRPC inside (with the stack's service token, if any). */
export function clientsOf(stack: TestStack) {
  const inside = (baseUrl: string) => createGrpcTransport({ baseUrl, interceptors: sendServiceToken(stack.env.SERVICE_TOKEN || undefined) });
  return {
    gateway: createClient(GatewayService, createConnectTransport({ baseUrl: stack.url.gateway, httpVersion: "1.1" })),
    covisit: createClient(CovisitService, inside(stack.url.covisit)),
    ingest: createClient(IngestService, inside(stack.url.ingest)),
    embedder: createClient(EmbedderService, inside(stack.url.embedder)),
    profile: createClient(ProfileService, inside(stack.url.profile)),
    analytics: createClient(AnalyticsService, inside(stack.url.analytics)),
    archive: createClient(ArchiveService, inside(stack.url.archive)),
  };
}

/** Every url's recommendations through the gateway, `limit` deep, a few requests at a time. */
export async function recommendationsFor(gateway: ReturnType<typeof clientsOf>["gateway"], urls: string[], limit: number) {
  const out = new Map<string, Array<{ recommendation: string; frequency: number }>>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < urls.length) {
        const url = urls[next++]!;
        const res = await gateway.recommendation({ url, limit });
        out.set(
          url,
          res.items.map((i) => ({ recommendation: i.recommendation, frequency: Number(i.frequency) })),
        );
      }
    }),
  );
  return out;
}

/** "<Code>: <message>" of a refused call, "ok" of one that succeeded. */
export const outcome = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
  );
