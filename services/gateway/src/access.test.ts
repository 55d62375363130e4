// Who may call the gateway: API keys with a read or write scope at both doors, and a limit on
// mutations per client that queries never meet.
import type { RpcServer } from "@recsys/server";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Access, parseApiKeys } from "./access.js";
import { DOC, gatewayOverFakeBackends, logger, type Answer, type BackendCall } from "./testing.js";

/** Every call the fake backends got. */
let asked: BackendCall[] = [];
const startGateway = gatewayOverFakeBackends({ record: (call) => asked.push(call) });
beforeEach(() => {
  asked = [];
});

describe("API keys and rate limits", () => {
  const READ_KEY = "read-key-0123456789";
  const WRITE_KEY = "write-key-0123456789";
  let guardedServer: RpcServer;
  let guardedBase: string;

  beforeAll(async () => {
    const access = new Access(parseApiKeys(`${READ_KEY}:read, ${WRITE_KEY}:write`), 3, logger);
    guardedServer = await startGateway(access);
    guardedBase = `http://127.0.0.1:${guardedServer.port}`;
  });
  afterAll(async () => guardedServer?.close());

  const connectCall = async (method: string, body: object, key?: string) => {
    const res = await fetch(`${guardedBase}/recsys.gateway.v1.GatewayService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
  };
  const graphqlCall = async (query: string, key?: string) => {
    const res = await fetch(`${guardedBase}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
      body: JSON.stringify({ query }),
    });
    return (await res.json()) as Answer;
  };
  const click = { event: { userid: "1", url: "https://en.wikipedia.org/wiki/Zoop" } };

  it("refuse a call without a valid key at both doors, and reach no backend", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" })).body).toMatchObject({
      code: "unauthenticated",
      message: "x-api-key: a valid API key is required",
    });
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, "not-a-configured-key")).body).toMatchObject({ code: "unauthenticated" });
    expect((await graphqlCall(DOC.events)).errors).toMatchObject([
      { message: "x-api-key: a valid API key is required", extensions: { code: "UNAUTHENTICATED" } },
    ]);
    expect(asked).toEqual([]);
  });

  it("let a read key query but not write, and a write key do both", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, READ_KEY)).status).toBe(200);
    expect((await graphqlCall(DOC.events, READ_KEY)).data?.Events).toHaveLength(2);
    asked = [];
    expect((await connectCall("Clickstream", click, READ_KEY)).body).toMatchObject({ code: "permission_denied" });
    expect((await graphqlCall(DOC.clickstream, READ_KEY)).errors).toMatchObject([{ extensions: { code: "PERMISSION_DENIED" } }]);
    expect(asked).toEqual([]);
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).data).toEqual({ Clickstream: { userid: "1" } });
  });

  it("limit mutations per client, across both doors, and never queries", async () => {
    // The write key used one of its 3 mutations above; two more pass, the next is refused.
    expect((await connectCall("Clickstream", click, WRITE_KEY)).status).toBe(200);
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).errors).toBeUndefined();
    asked = [];
    expect((await connectCall("Clickstream", click, WRITE_KEY)).body).toMatchObject({
      code: "resource_exhausted",
      message: expect.stringMatching(/^rate limit: at most 3 mutations a minute per client/),
    });
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).errors).toMatchObject([{ extensions: { code: "RESOURCE_EXHAUSTED" } }]);
    expect(asked).toEqual([]);
    for (let i = 0; i < 5; i++) expect((await connectCall("Recommendation", { url: "https://e.org/a" }, WRITE_KEY)).status).toBe(200);
  });

  it("refuse a malformed key list at start", () => {
    expect(() => parseApiKeys("short:write")).toThrow(/GATEWAY_API_KEYS/);
    expect(() => parseApiKeys("a-long-enough-key-123:admin")).toThrow(/GATEWAY_API_KEYS/);
    expect(parseApiKeys("")).toEqual(new Map());
  });
});
