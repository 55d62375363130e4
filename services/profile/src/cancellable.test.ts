// A query nobody waits for any more stops in PostgreSQL, and no query outlives the pool's limit.
import { createLogger } from "@recsys/logging";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { cancellable } from "./cancellable.js";
import { createPool } from "./pool.js";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const logger = createLogger("profile").child({}, { level: "silent" });
const pools: pg.Pool[] = [];
const poolOf = (statementTimeoutMs: number) => {
  const pool = createPool({ databaseUrl: DATABASE_URL, schema: "public", max: 2, statementTimeoutMs, logger });
  pools.push(pool);
  return pool;
};
afterAll(async () => Promise.all(pools.map((p) => p.end())));

/** Statements running pg_sleep with this marker, as PostgreSQL sees them. */
async function running(pool: pg.Pool, marker: string): Promise<number> {
  const r = await pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()", [
    `%${marker}%`,
  ]);
  return Number(r.rows[0]!.n);
}

describe("cancellable reads", () => {
  it("cancels the statement in PostgreSQL when the caller gives up, and the client works on", async () => {
    const pool = poolOf(60_000);
    const marker = `cancel_${process.pid}_${Date.now()}`;
    const caller = new AbortController();
    const started = Date.now();
    const read = cancellable(pool, caller.signal, (db) => db.query(`SELECT pg_sleep(20) AS ${marker}`));
    await expect.poll(() => running(pool, marker), { timeout: 5_000, interval: 50 }).toBe(1);
    caller.abort();
    await expect(read).rejects.toMatchObject({ code: "57014" });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await running(pool, marker)).toBe(0);
    expect((await pool.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  });

  it("does not start a read for a caller that already gave up", async () => {
    const caller = new AbortController();
    caller.abort();
    let ran = false;
    await expect(cancellable(poolOf(60_000), caller.signal, async () => (ran = true))).rejects.toThrow();
    expect(ran).toBe(false);
  });

  it("ends any statement past the pool's statement timeout", async () => {
    const pool = poolOf(200);
    const started = Date.now();
    await expect(pool.query("SELECT pg_sleep(5)")).rejects.toMatchObject({ code: "57014" });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
