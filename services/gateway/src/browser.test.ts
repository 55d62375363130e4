// What a page on another site can make a browser do with the gateway: nothing, unless its origin is
// listed. Forms cannot post mutations, simple GETs need a header, GraphiQL loads nothing from elsewhere.
import type { RpcServer } from "@recsys/server";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Access } from "./access.js";
import { DOC, gatewayOverFakeBackends, logger, type BackendCall } from "./testing.js";

let asked: BackendCall[] = [];
const startGateway = gatewayOverFakeBackends({ record: (call) => asked.push(call) });
beforeEach(() => {
  asked = [];
});

const APP = "https://app.example.com";
const EVIL = "https://evil.example.net";
const servers: RpcServer[] = [];
let listed: string;
let unlisted: string;
beforeAll(async () => {
  const open = Access.open(logger);
  const a = await startGateway(open, { corsOrigins: [APP], graphiql: true });
  const b = await startGateway(open, { graphiql: false });
  servers.push(a, b);
  listed = `http://127.0.0.1:${a.port}`;
  unlisted = `http://127.0.0.1:${b.port}`;
});
afterAll(async () => Promise.all(servers.map((s) => s.close())));

const preflight = (base: string, origin: string, path = "/recsys.gateway.v1.GatewayService/Clickstream") =>
  fetch(`${base}${path}`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,x-api-key,authorization" },
  });

describe("CORS", () => {
  it("answers a listed origin's preflight, for RPCs and GraphQL, with the headers a client sends", async () => {
    for (const path of ["/recsys.gateway.v1.GatewayService/Clickstream", "/graphql"]) {
      const res = await preflight(listed, APP, path);
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe(APP);
      expect(res.headers.get("access-control-allow-headers")).toMatch(/x-api-key/);
      expect(res.headers.get("access-control-allow-headers")).toMatch(/authorization/);
    }
    const answer = await fetch(`${listed}/recsys.gateway.v1.GatewayService/Recommendation`, {
      method: "POST",
      headers: { origin: APP, "content-type": "application/json" },
      body: JSON.stringify({ url: "https://e.org/a" }),
    });
    expect(answer.headers.get("access-control-allow-origin")).toBe(APP);
  });

  it("gives no other origin, and no origin at all by default, leave to read an answer", async () => {
    expect((await preflight(listed, EVIL)).headers.get("access-control-allow-origin")).toBeNull();
    expect((await preflight(unlisted, APP)).headers.get("access-control-allow-origin")).toBeNull();
    const answer = await fetch(`${unlisted}/graphql`, {
      method: "POST",
      headers: { origin: APP, "content-type": "application/json" },
      body: JSON.stringify({ query: DOC.events }),
    });
    expect(answer.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("cross-site requests", () => {
  it("refuses a form POST of a mutation, url-encoded, multipart or plain text, and writes nothing", async () => {
    const form = new URLSearchParams({ query: DOC.clickstream });
    const multipart = new FormData();
    multipart.set("query", DOC.clickstream);
    for (const body of [form, multipart, JSON.stringify({ query: DOC.clickstream })]) {
      const res = await fetch(`${listed}/graphql`, { method: "POST", headers: { origin: EVIL }, body });
      expect(res.status).toBe(415);
      expect(await res.json()).toMatchObject({ errors: [{ message: "content-type: POST /graphql takes application/json only" }] });
    }
    expect(asked).toEqual([]);
  });

  it("refuses a simple GET without the CSRF header", async () => {
    const res = await fetch(`${listed}/graphql?query=${encodeURIComponent(DOC.events)}`);
    expect(res.status).toBe(403);
    expect(asked).toEqual([]);
  });
});

describe("GraphiQL", () => {
  it("is served whole, with nothing loaded from another host, when enabled; not at all otherwise", async () => {
    const page = await fetch(`${listed}/graphiql`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)=["']https?:/);
    expect(html).not.toMatch(/unpkg|jsdelivr|cdn\./i);
    expect((await fetch(`${unlisted}/graphiql`)).status).toBe(404);
  });
});
