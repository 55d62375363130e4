// The gateway's own reads of covisit's Redis and profile's PostgreSQL: a failing store is Unavailable, and its error's text (which
// names hosts, roles and users) stays out of the answer.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import type { ProfileService } from "@recsys/contracts/profile/v1/profile";
import type { CovisitStore } from "@recsys/covisit-store";
import { createLogger } from "@recsys/logging";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { readingCovisitRedis } from "./covisit-reads.js";
import { readingProfilePostgres } from "./profile-reads.js";

const secret = new Error('connect ECONNREFUSED 10.0.0.5:6379 (user "covisit", password "hunter2")');
const logger = createLogger("store-reads-test");
const failure = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );

describe("the gateway's reads of the stores", () => {
  it("answer a failing Redis or PostgreSQL Unavailable, without the store's error text (it goes to the log)", async () => {
    const reader = { coVisitsAfter: () => Promise.reject(secret) } as unknown as CovisitStore;
    const covisit = readingCovisitRedis({} as Client<typeof CovisitService>, reader, logger);
    // A batch answers each request: the failure is the request's refusal.
    const answer = await covisit.batchRecommendation({ requests: [{ url: "https://e.org/a", limit: 3, userid: "" }] });
    expect(answer.results.map((r) => r.outcome)).toMatchObject([
      { case: "refused", value: { code: Code.Unavailable, message: "covisit's Redis is unavailable" } },
    ]);
    const pool = { query: () => Promise.reject(secret) } as unknown as pg.Pool;
    const profile = readingProfilePostgres({} as Client<typeof ProfileService>, pool, logger);
    const postgres = await failure(profile.batchSimilarContent({ requests: [{ userid: "u1", limit: 3, includeSeen: false }] }));
    expect(postgres).toMatchObject({ code: Code.Unavailable, rawMessage: "profile's PostgreSQL is unavailable" });
    expect(postgres?.cause).toBe(secret);
  });
});
