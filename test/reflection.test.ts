import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, startStack, type ServiceName, type TestStack } from "./harness/stack.js";

// gRPC server reflection, asked by a real reflection client: `buf curl` (the buf CLI the build already uses), over gRPC on
// h2c as grpcurl would. Every service lists itself and its methods without the proto files, and a call built from what
// reflection told works, with both versions of the reflection protocol.

const SERVED: Record<ServiceName, string> = {
  ingest: "recsys.ingest.v1.IngestService",
  covisit: "recsys.covisit.v1.CovisitService",
  embedder: "recsys.embedder.v1.EmbedderService",
  profile: "recsys.profile.v1.ProfileService",
  analytics: "recsys.analytics.v1.AnalyticsService",
  archive: "recsys.archive.v1.ArchiveService",
  gateway: "recsys.gateway.v1.GatewayService",
};

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack("reflection", {}, { services: Object.keys(SERVED) as ServiceName[] });
});
afterAll(async () => stack?.stop());

/** `buf curl` against a service, the service token sent (to reflection too) where the stack's services require one. */
function bufCurl(service: ServiceName, args: string[]) {
  const token = stack.env.SERVICE_TOKEN && service !== "gateway" ? ["-H", `authorization: Bearer ${stack.env.SERVICE_TOKEN}`, "--reflect-header", "*"] : [];
  const run = spawnSync(join(repoRoot, "node_modules/.bin/buf"), ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...token, ...args], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("gRPC server reflection", () => {
  it("lists every service's own service, health and reflection, and their methods, over both reflection protocols", async () => {
    for (const [service, name] of Object.entries(SERVED) as Array<[ServiceName, string]>) {
      for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
        const listed = bufCurl(service, ["--reflect-protocol", protocol, "--list-services", stack.url[service]]);
        expect(listed.status, `${service} ${protocol}: ${listed.stderr}`).toBe(0);
        expect(listed.stdout.trim().split("\n").sort(), service).toEqual(
          [name, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"].sort(),
        );
      }
      const methods = bufCurl(service, ["--list-methods", stack.url[service]]);
      expect(methods.status, methods.stderr).toBe(0);
      expect(methods.stdout.split("\n").filter((m) => m.startsWith(`${name}/`)).length, service).toBeGreaterThan(0);
    }
    const gateway = bufCurl("gateway", ["--list-methods", stack.url.gateway]).stdout.trim().split("\n");
    expect(gateway).toEqual(
      expect.arrayContaining([
        "recsys.gateway.v1.GatewayService/Recommendation",
        "recsys.gateway.v1.GatewayService/RelatedContent",
        "recsys.gateway.v1.GatewayService/ClickMetrics",
      ]),
    );
  });

  it("gives the schema a call needs: the gateway answers a Recommendation built from JSON, and refuses a bad url naming it", async () => {
    const ok = bufCurl("gateway", [
      "-d",
      JSON.stringify({ url: "https://en.wikipedia.org/wiki/Nothing_clicked_yet", limit: 3 }),
      `${stack.url.gateway}/recsys.gateway.v1.GatewayService/Recommendation`,
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({});
    const refused = bufCurl("gateway", ["-d", JSON.stringify({ url: "not a url" }), `${stack.url.gateway}/recsys.gateway.v1.GatewayService/Recommendation`]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/invalid_argument[\s\S]*url: /);
    // A field the schema does not have is refused by the client, from the schema reflection gave it.
    const unknown = bufCurl("gateway", ["-d", JSON.stringify({ nope: 1 }), `${stack.url.gateway}/recsys.gateway.v1.GatewayService/Recommendation`]);
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toMatch(/nope/);
  });

  it("answers NotFound for a service no server here has", async () => {
    const missing = bufCurl("gateway", ["-d", "{}", `${stack.url.gateway}/recsys.nowhere.v1.NothingService/Call`]);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/recsys\.nowhere\.v1\.NothingService/);
  });
});
