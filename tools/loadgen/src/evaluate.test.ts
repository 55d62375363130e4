import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drawStreams } from "./draws.js";
import { connectJsonGateway, evaluate, formatEvaluation, scoreRecommendation, scoreSimilarContent, type GatewayQueries } from "./evaluate.js";
import type { UserTruth } from "./truth.js";
import { generateWorkload } from "./workload.js";

describe("scoreRecommendation", () => {
  it("counts the later pages of the path in the top k, beside what random pages would score", () => {
    const path = ["a", "b", "c", "d"];
    const s = scoreRecommendation(path, ["b", "x", "d", "c", "y"], 2, 101);
    expect(s).toEqual({ precision: 0.5, recall: 1 / 3, idealPrecision: 1, randomPrecision: 3 / 100, randomRecall: 2 / 100 });
    // A short answer counts its missing places as misses; a short path caps the ideal.
    expect(scoreRecommendation(path, ["b"], 10, 101)).toMatchObject({ precision: 0.1, recall: 1 / 3, idealPrecision: 0.3 });
  });
});

describe("scoreSimilarContent", () => {
  const user: UserTruth = { userid: "u", topic: "music", clicked: ["m1", "s1"], heldOut: ["m2", "m3", "m4"] };
  const topic = new Set(["m1", "m2", "m3", "m4"]);

  it("leaves out the pages the user clicked, and also scores the answer as given", () => {
    const s = scoreSimilarContent(user, topic, ["m1", "m2", "s1", "s2", "m3"], 2, 10);
    expect(s.precision).toBe(0.5); // m2, s2
    expect(s.precisionWithClicked).toBe(1); // m1, m2
    expect(s.idealPrecision).toBe(1);
    expect(s.randomPrecision).toBe(3 / 8);
    expect(s.randomPrecisionWithClicked).toBe(4 / 10);
  });
});

describe("evaluate", () => {
  const { truth } = generateWorkload({ users: 100, pages: 80, topics: 4, clicks: 1500, paths: 4, followers: 8, durationMinutes: 15, seed: 3 });
  const topicOf = new Map(truth.topics.flatMap((t) => t.pages.map((url) => [url, t.name] as const)));
  const allPages = [...topicOf.keys()];

  it("scores an oracle at the ideal and random answers near the baseline", async () => {
    const oracle: GatewayQueries = {
      async recommendation(url, limit) {
        return truth.paths.find((p) => p.pages[0] === url)!.pages.slice(1, limit + 1);
      },
      async similarContent(userid, limit) {
        const u = truth.users.find((x) => x.userid === userid)!;
        return [...u.clicked, ...u.heldOut].slice(0, limit);
      },
    };
    const best = await evaluate({ truth, gateway: oracle, gatewayUrl: "oracle", k: 10, concurrency: 4 });
    expect(best.recommendation).toMatchObject({ queries: 4, precisionAtK: 1, recallAtK: 1, idealPrecisionAtK: 1 });
    expect(best.similarContent.precisionAtK).toBe(best.similarContent.idealPrecisionAtK);
    expect(best.similarContent.queries).toBe(truth.users.filter((u) => u.topic !== null && u.clicked.length > 0).length);

    const [draws] = drawStreams(11, 1);
    const random: GatewayQueries = {
      async recommendation(_url, limit) {
        return draws!.sample(allPages, limit);
      },
      async similarContent(_userid, limit) {
        return draws!.sample(allPages, limit);
      },
    };
    const r = await evaluate({ truth, gateway: random, gatewayUrl: "random", k: 10, concurrency: 4 });
    expect(r.similarContent.precisionAtK!).toBeLessThan(2 * r.similarContent.randomPrecisionAtK!);
    expect(r.similarContent.withClicked.precisionAtK!).toBeLessThan(2 * r.similarContent.withClicked.randomPrecisionAtK!);
    expect(r.recommendation.precisionAtK!).toBeLessThan(0.5);
    expect(formatEvaluation(r)).toMatch(/^Recommendation\s+4\s+\d\.\d{3}\s+0\.127/m);
  });

  it("refuses a k the gateway would refuse", async () => {
    const never: GatewayQueries = { recommendation: async () => [], similarContent: async () => [] };
    await expect(evaluate({ truth, gateway: never, gatewayUrl: "", k: 1001, concurrency: 1 })).rejects.toThrow("--k");
  });
});

describe("connectJsonGateway", () => {
  const seen: Array<{ url: string; headers: IncomingMessage["headers"]; body: unknown }> = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      seen.push({ url: req.url!, headers: req.headers, body: JSON.parse(body) });
      res.setHeader("content-type", "application/json");
      if (req.url!.endsWith("/Recommendation")) res.end(JSON.stringify({ items: [{ recommendation: "https://e.org/b", frequency: "3" }] }));
      else if (JSON.parse(body).userid === "nobody") res.end("{}");
      else {
        res.statusCode = 400;
        res.end(JSON.stringify({ code: "invalid_argument", message: "userid: must not be empty" }));
      }
    });
  });
  let base = "";
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("posts JSON to the Connect path of each RPC, with the key, and reads the items", async () => {
    const gw = connectJsonGateway(base, { apiKey: "k".repeat(16) });
    expect(await gw.recommendation("https://e.org/a", 10)).toEqual(["https://e.org/b"]);
    expect(seen[0]).toMatchObject({ url: "/recsys.gateway.v1.GatewayService/Recommendation", body: { url: "https://e.org/a", limit: 10 } });
    expect(seen[0]!.headers).toMatchObject({ "content-type": "application/json", "x-api-key": "k".repeat(16) });
    // proto3 JSON leaves out an empty list.
    expect(await gw.similarContent("nobody", 5)).toEqual([]);
  });

  it("names the RPC and the Connect error when the gateway refuses", async () => {
    await expect(connectJsonGateway(base).similarContent("", 5)).rejects.toThrow(/SimilarContent .*HTTP 400 invalid_argument: userid: must not be empty/);
  });

  it("says which gateway it could not reach", async () => {
    await expect(connectJsonGateway("http://127.0.0.1:1").recommendation("https://e.org/a", 1)).rejects.toThrow(
      "cannot reach the gateway at http://127.0.0.1:1",
    );
  });
});
