// The OpenAPI document of the Connect JSON routes: generated from the protos as they are now, a valid OpenAPI 3.1 document, one
// path per RPC, and served at /openapi.json.
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import SwaggerParser from "@apidevtools/swagger-parser";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { describe, expect, it } from "vitest";
import { gatewayOpenApi } from "./openapi.js";
import { openApiRoute } from "./openapi-http.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const committed = new URL("../openapi.json", import.meta.url);

describe("openapi.json", () => {
  it("is what the protos generate now (run `pnpm openapi` after changing gateway.proto)", () => {
    expect(readFileSync(committed, "utf8")).toBe(gatewayOpenApi(repoRoot));
  });

  it("is a valid OpenAPI 3.1 document with a path for every RPC, its fields and comments from the protos", async () => {
    const doc = JSON.parse(readFileSync(committed, "utf8"));
    await SwaggerParser.validate(structuredClone(doc));
    expect(Object.keys(doc.paths).sort()).toEqual(GatewayService.methods.map((m) => `/recsys.gateway.v1.GatewayService/${m.name}`).sort());
    const request = doc.components.schemas["recsys.gateway.v1.RecommendationRequest"];
    expect(Object.keys(request.properties)).toEqual(["url", "limit", "fallback", "userid"]);
    expect(request.properties.userid.description).toMatch(/leave out the pages this user clicked/);
    expect(doc.components.schemas["recsys.gateway.v1.Recommendation"].properties.frequency.format).toBe("int64");
    expect(doc.components.schemas["recsys.gateway.v1.EventsResponse"].properties.nextCursor.type).toBe("string");
    expect(doc.paths["/recsys.gateway.v1.GatewayService/RelatedContent"].post.description).toMatch(/nearest in meaning/);
  });

  it("is served at GET /openapi.json", async () => {
    const route = openApiRoute(committed);
    const server = http.createServer((req, res) => {
      if (!route(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await fetch(`${base}/openapi.json`);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(await res.text()).toBe(readFileSync(committed, "utf8"));
      expect((await fetch(`${base}/openapi.yaml`)).status).toBe(404);
    } finally {
      server.close();
    }
  });
});
