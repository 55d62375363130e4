import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf, outcome } from "./harness/clients.js";
import { clicksLastSequence, writesStored } from "./harness/oracle.js";
import { freePort, repoRoot, startStack, type TestStack } from "./harness/stack.js";

// The stack as it runs off loopback: every service on 0.0.0.0, backends requiring the service
// token, the gateway taking service keys and user tokens only.

const SECRET = randomBytes(32).toString("base64url");
const SERVICE_TOKEN = randomBytes(32).toString("base64url");
const READ_KEY = `read-${randomBytes(12).toString("hex")}`;
const WRITE_KEY = `write-${randomBytes(12).toString("hex")}`;

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

const tokenFor = (sub: string, { secret = SECRET, expiresIn = "5m" } = {}) =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setIssuedAt().setExpirationTime(expiresIn).sign(new TextEncoder().encode(secret));

/** The gateway (or one of its replicas) as a client with these headers sees it. */
const gatewayWith = (headers: Record<string, string>, baseUrl = stack.url.gateway) =>
  createClient(
    GatewayService,
    createConnectTransport({
      baseUrl,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
          return next(req);
        },
      ],
    }),
  );
const graphql = (body: BodyInit, headers: Record<string, string>) => fetch(`${stack.url.gateway}/graphql`, { method: "POST", headers, body });

async function clicksApplied() {
  const last = await clicksLastSequence(stack);
  await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
}

beforeAll(async () => {
  stack = await startStack("auth", {
    HOST: "0.0.0.0",
    SERVICE_TOKEN,
    GATEWAY_API_KEYS: `${READ_KEY}:read,${WRITE_KEY}:write`,
    GATEWAY_JWT_SECRET: SECRET,
    // Low enough to reach in a test; every other test here stays below it.
    GATEWAY_USER_MUTATIONS_PER_MINUTE: "5",
  });
  c = clientsOf(stack);
}, 120_000);
afterAll(async () => stack?.stop());

describe("off loopback", () => {
  it("a gateway without credentials and a backend without the service token refuse to start, saying how to configure them", async () => {
    for (const [service, say] of [
      ["gateway", /GATEWAY_API_KEYS.*GATEWAY_JWT_SECRET/],
      ["ingest", /SERVICE_TOKEN/],
    ] as const) {
      const child = spawn(process.execPath, [join(repoRoot, "services", service, "dist/main.js")], {
        env: {
          ...stack.env,
          HOST: "0.0.0.0",
          SERVICE_TOKEN: "",
          GATEWAY_API_KEYS: "",
          GATEWAY_JWT_SECRET: "",
          GATEWAY_PORT: String(await freePort()),
          INGEST_PORT: String(await freePort()),
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      expect(code, service).not.toBe(0);
      expect(output, service).toMatch(say);
    }
  });

  it("refuses anonymous reads and writes at both doors, and writes nothing", async () => {
    const before = await writesStored(stack);
    const anonymous = gatewayWith({});
    expect(await outcome(anonymous.recommendation({ url: "https://e.org/auth/a" }))).toMatch(/^Unauthenticated: credentials required/);
    expect(await outcome(anonymous.clickstream({ event: { userid: "anon", url: "https://e.org/auth/a" } }))).toMatch(/^Unauthenticated/);
    const answer = await (await graphql(JSON.stringify({ query: `{ Events(limit: 1) { id } }` }), { "content-type": "application/json" })).json();
    expect(answer).toMatchObject({ errors: [{ extensions: { code: "UNAUTHENTICATED" } }] });
    expect((await fetch(`${stack.url.gateway}/metrics`)).status).toBe(401);
    expect((await fetch(`${stack.url.gateway}/metrics`, { headers: { "x-api-key": READ_KEY } })).status).toBe(200);
    expect(await writesStored(stack)).toEqual(before);
  });
});

describe("user tokens and service keys", () => {
  const A = "https://e.org/auth/a";
  const B = "https://e.org/auth/b";

  it("a user acts as itself; acting for another user, an expired and a forged token are refused and write nothing", async () => {
    const mallory = gatewayWith({ authorization: `Bearer ${await tokenFor("mallory")}` });
    const before = await writesStored(stack);
    expect(await outcome(mallory.clickstream({ event: { userid: "alice", url: A } }))).toBe(
      "PermissionDenied: event.userid: a user token acts only for its own user (mallory)",
    );
    expect(await outcome(mallory.similarContent({ userid: "alice" }))).toMatch(/^PermissionDenied: userid: /);
    const expired = gatewayWith({ authorization: `Bearer ${await tokenFor("alice", { expiresIn: "-1m" })}` });
    expect(await outcome(expired.clickstream({ event: { userid: "alice", url: A } }))).toBe("Unauthenticated: authorization: the token has expired");
    const forged = gatewayWith({ authorization: `Bearer ${await tokenFor("alice", { secret: randomBytes(32).toString("hex") })}` });
    expect(await outcome(forged.clickstream({ event: { userid: "alice", url: A } }))).toBe(
      "Unauthenticated: authorization: the token's signature does not verify",
    );
    expect(await writesStored(stack)).toEqual(before);

    const alice = gatewayWith({ authorization: `Bearer ${await tokenFor("alice")}` });
    await alice.clickstream({ event: { userid: "alice", url: A, eventTime: new Date(Date.now() - 1_000).toISOString() } });
    await alice.clickstream({ event: { userid: "alice", url: B, eventTime: new Date().toISOString() } });
    await clicksApplied();
    expect((await alice.recommendation({ url: A })).items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([[B, 1]]);
  });

  it("a service key acts for any user; a read key only reads", async () => {
    const service = gatewayWith({ "x-api-key": WRITE_KEY });
    const t0 = Date.now() - 2_000;
    await service.clickstream({ event: { userid: "bob", url: A, eventTime: new Date(t0).toISOString() } });
    await service.clickstream({ event: { userid: "carol", url: A, eventTime: new Date(t0).toISOString() } });
    await service.clickstream({ event: { userid: "carol", url: B, eventTime: new Date(t0 + 1_000).toISOString() } });
    await clicksApplied();
    expect((await service.recommendation({ url: A })).items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([[B, 2]]);
    expect(await outcome(gatewayWith({ "x-api-key": READ_KEY }).clickstream({ event: { userid: "bob", url: B } }))).toMatch(/^PermissionDenied: x-api-key: /);
  });
});

describe("rate limits", () => {
  it("are shared by the gateway's replicas: a user past its limit is refused at either", async () => {
    const replica = await stack.addReplica("gateway");
    try {
      const headers = { authorization: `Bearer ${await tokenFor("dave")}` };
      const doors = [gatewayWith(headers), gatewayWith(headers, replica.url)];
      const outcomes: string[] = [];
      for (let i = 0; i < 6; i++) outcomes.push(await outcome(doors[i % 2]!.clickstream({ event: { userid: "dave", url: `https://e.org/auth/d${i}` } })));
      expect(outcomes.slice(0, 5)).toEqual(Array(5).fill("ok"));
      expect(outcomes[5]).toMatch(/^ResourceExhausted: rate limit: at most 5 mutations a minute per user; retry in \d+ s$/);
      // Another user has a limit of its own.
      expect(
        await outcome(
          gatewayWith({ authorization: `Bearer ${await tokenFor("erin")}` }, replica.url).clickstream({
            event: { userid: "erin", url: "https://e.org/auth/e" },
          }),
        ),
      ).toBe("ok");
    } finally {
      await replica.kill();
    }
  });
});

describe("failed authentications", () => {
  it("past 600 a minute from one address, that gateway refuses the address's other calls unchecked, but for a service key", async () => {
    // A gateway of its own: the count is each process's, and this one's address (loopback) is every test's.
    const replica = await stack.addReplica("gateway");
    try {
      const forged = `Bearer ${await tokenFor("mallory", { secret: randomBytes(32).toString("hex") })}`;
      const call = (authorization: string) =>
        fetch(`${replica.url}/recsys.gateway.v1.GatewayService/SimilarContent`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization },
          body: JSON.stringify({ userid: "mallory" }),
        }).then(async (res) => ({ status: res.status, code: ((await res.json()) as { code?: string }).code }));
      const answers: Array<{ status: number; code?: string }> = [];
      let sent = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (sent < 600) {
            sent++;
            answers.push(await call(forged));
          }
        }),
      );
      expect(answers.filter((a) => a.code === "unauthenticated")).toHaveLength(600);
      // A good token never seen before is refused without being checked; a service key is not.
      const frank = gatewayWith({ authorization: `Bearer ${await tokenFor("frank")}` }, replica.url);
      expect(await outcome(frank.similarContent({ userid: "frank" }))).toMatch(
        /^ResourceExhausted: authentication: 600 calls from this address failed it within a minute; retry in \d+ s$/,
      );
      expect(await outcome(gatewayWith({ "x-api-key": READ_KEY }, replica.url).similarContent({ userid: "frank" }))).toBe("ok");
      // The stack's own gateway counts its own.
      expect(await outcome(gatewayWith({ authorization: `Bearer ${await tokenFor("frank")}` }).similarContent({ userid: "frank" }))).toBe("ok");
      const metrics = await (await fetch(`${replica.url}/metrics`, { headers: { "x-api-key": READ_KEY } })).text();
      expect(metrics).toMatch(/^recsys_gateway_refusals_total\{kind="unauthenticated"[^}]*\} 600$/m);
      expect(metrics).toMatch(/^recsys_gateway_refusals_total\{kind="auth_failures"[^}]*\} 1$/m);
    } finally {
      await replica.kill();
    }
  });
});

describe("browsers and costs", () => {
  it("a cross-origin form POST of a mutation is refused and writes nothing", async () => {
    const before = await writesStored(stack);
    const form = new URLSearchParams({ query: `mutation { Clickstream(event: {url: "https://e.org/auth/x", userid: "alice"}) { userid } }` });
    const res = await graphql(form, { origin: "https://evil.example.net", authorization: `Bearer ${await tokenFor("alice")}` });
    expect(res.status).toBe(415);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(await writesStored(stack)).toEqual(before);
  });

  it("15 aliases of Events(limit: 1000) are refused", async () => {
    const query = `{ ${Array.from({ length: 15 }, (_, i) => `a${i}: Events(limit: 1000) { abstract }`).join(" ")} }`;
    const answer = await (await graphql(JSON.stringify({ query }), { "content-type": "application/json", "x-api-key": READ_KEY })).json();
    expect(answer).toMatchObject({ errors: [{ message: expect.stringMatching(/^Items limit of 5000 exceeded/) }] });
  });
});

describe("inside", () => {
  it("a backend refuses an RPC without the service token, and answers health checks and the token's holder", async () => {
    const bare = createClient(CovisitService, createGrpcTransport({ baseUrl: stack.url.covisit }));
    expect(await outcome(bare.progress({}))).toBe("Unauthenticated: authorization: this service needs the service token (Bearer)");
    expect((await fetch(`${stack.url.covisit}/healthz`)).status).toBe(200);
    expect((await c.covisit.progress({})).ackFloorStreamSequence).toBeGreaterThanOrEqual(0n);
  });
});

describe("slow clients", () => {
  it("500 idle sockets are closed within 30 s while a normal client is served", async () => {
    const port = Number(new URL(stack.url.gateway).port);
    const started = Date.now();
    const closed = Array.from({ length: 500 }, () => {
      const socket = net.connect(port, "127.0.0.1");
      socket.on("error", () => {});
      return new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - started)));
    });
    const service = gatewayWith({ "x-api-key": READ_KEY });
    let served = 0;
    let allClosed = false;
    const when = Promise.all(closed).then((times) => {
      allClosed = true;
      return Math.max(...times);
    });
    while (!allClosed && Date.now() - started < 35_000) {
      await service.recommendation({ url: "https://e.org/auth/a" });
      served++;
      await sleep(200);
    }
    expect(await Promise.race([when, sleep(1_000).then(() => Infinity)])).toBeLessThanOrEqual(30_000);
    expect(served).toBeGreaterThan(10);
  }, 45_000);
});
