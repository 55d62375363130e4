import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus } from "@recsys/bus";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { covisitRoutes } from "./handlers.js";
import { CovisitStore } from "./redis-store.js";

// Against the real Redis, in a namespace of its own; Progress needs NATS and is left to the integration tests.
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const namespace = `unit${process.pid}rpc`;
const store = new CovisitStore(redis, namespace, 300_000);
const client = createClient(CovisitService, createRouterTransport(covisitRoutes(store, {} as Bus, [])));
const T0 = Date.parse("2024-01-02T00:00:00Z");

beforeAll(async () => {
  await store.markFirstClick();
  await store.applyClicks([
    { eventId: "1", userid: "u", url: "https://e.org/a", eventTimeMs: T0 },
    { eventId: "2", userid: "u", url: "https://e.org/b", eventTimeMs: T0 + 1_000 },
    { eventId: "3", userid: "u", url: "https://e.org/c", eventTimeMs: T0 + 2_000 },
  ]);
});
afterAll(async () => {
  const keys = await redis.keys(`${namespace}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

it("answers a batch as each call alone would, a refused one with its own code and message", async () => {
  const requests = [
    { url: "https://e.org/a" },
    { url: "not a url" },
    { url: "https://e.org/a", limit: 1 },
    { url: "https://e.org/b", limit: 5000 },
    { url: "https://e.org/none" },
  ];
  const res = await client.batchRecommendation({ requests });
  expect(res.results).toHaveLength(requests.length);
  for (const [i, req] of requests.entries()) {
    const alone = await client.recommendation(req).then(
      (r) => ({ case: "response", items: r.items.map((x) => [x.recommendation, Number(x.frequency)]) }),
      (e: unknown) => ({ case: "refused", code: ConnectError.from(e).code, message: ConnectError.from(e).rawMessage }),
    );
    const o = res.results[i]!.outcome;
    const got =
      o.case === "response"
        ? { case: "response", items: o.value.items.map((x) => [x.recommendation, Number(x.frequency)]) }
        : { case: o.case, code: o.value?.code, message: o.value?.message };
    expect(got, `request ${i}`).toEqual(alone);
  }
  expect(res.results.map((r) => r.outcome.case)).toEqual(["response", "refused", "response", "refused", "response"]);
  const first = res.results[0]!.outcome;
  expect(first.case === "response" && first.value.items.map((x) => x.recommendation)).toEqual(["https://e.org/b", "https://e.org/c"]);
  const refused = res.results[1]!.outcome;
  expect(refused.case === "refused" && refused.value.code).toBe(Code.InvalidArgument);
});

it("answers RecentPages for the urls asked about only, when given, and refuses a bad one naming it", async () => {
  const all = await client.recentPages({ userid: "u" });
  expect([...all.urls].sort()).toEqual(["https://e.org/a", "https://e.org/b", "https://e.org/c"]);
  const some = await client.recentPages({ userid: "u", urls: ["https://e.org/z", "https://e.org/b", "https://e.org/a"] });
  expect(some.urls).toEqual(["https://e.org/b", "https://e.org/a"]);
  expect((await client.recentPages({ userid: "nobody", urls: ["https://e.org/a"] })).urls).toEqual([]);
  const refusal = (urls: string[]) =>
    client.recentPages({ userid: "u", urls }).then(
      () => undefined,
      (e: unknown) => e as ConnectError,
    );
  expect(await refusal(["https://e.org/a", "not a url"])).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^urls\[1\]: /) });
  expect(await refusal(Array.from({ length: 1_001 }, (_, i) => `https://e.org/${i}`))).toMatchObject({
    code: Code.InvalidArgument,
    rawMessage: "urls: at most 1000, not 1001",
  });
});
