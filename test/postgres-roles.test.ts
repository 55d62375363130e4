// profile with its PostgreSQL roles, as the deploy files run it: one that owns the schema and runs
// the migrations (MIGRATION_DATABASE_URL), the one it works as (DATABASE_URL), which may read and
// write rows and nothing more, and the gateway's (PG_READER_ROLE, its DATABASE_URL), which
// may only read them. Roles of this run only, on the machine's PostgreSQL, dropped after.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { machine, startStack, type TestStack } from "./harness/stack.js";

const adminUrl = machine.postgres;
const suffix = `${process.pid}_${randomBytes(3).toString("hex")}`;
const roles = { migration: `recsys_migration_${suffix}`, runtime: `recsys_runtime_${suffix}`, reader: `recsys_reader_${suffix}` };
const passwords = { migration: randomBytes(12).toString("hex"), runtime: randomBytes(12).toString("hex"), reader: randomBytes(12).toString("hex") };
const urlAs = (who: keyof typeof roles) => {
  const u = new URL(adminUrl);
  u.username = roles[who];
  u.password = passwords[who];
  return u.toString();
};

let admin: pg.Client;
let runtime: pg.Client;
let reader: pg.Client;
let stack: TestStack;
let schema: string;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const database = (await admin.query<{ db: string }>("SELECT current_database() AS db")).rows[0]!.db;
  await admin.query(`CREATE ROLE ${roles.migration} LOGIN PASSWORD '${passwords.migration}'`);
  await admin.query(`CREATE ROLE ${roles.runtime} LOGIN PASSWORD '${passwords.runtime}'`);
  await admin.query(`CREATE ROLE ${roles.reader} LOGIN PASSWORD '${passwords.reader}'`);
  // What deploy/postgres/init-roles.sh gives the migrating role: a schema of its own in the database.
  await admin.query(`GRANT CREATE ON DATABASE "${database}" TO ${roles.migration}`);
  stack = await startStack(
    "pgroles",
    { DATABASE_URL: urlAs("runtime"), MIGRATION_DATABASE_URL: urlAs("migration") },
    {
      services: ["ingest", "covisit", "embedder", "profile", "gateway"],
      serviceEnv: { profile: { PG_READER_ROLE: roles.reader }, gateway: { DATABASE_URL: urlAs("reader") } },
    },
  );
  schema = `${stack.namespace}_recsys`;
  runtime = new pg.Client({ connectionString: urlAs("runtime"), options: `-c search_path=${schema},public` });
  await runtime.connect();
  reader = new pg.Client({ connectionString: urlAs("reader"), options: `-c search_path=${schema},public` });
  await reader.connect();
}, 120_000);

afterAll(async () => {
  await runtime?.end();
  await reader?.end();
  // The harness drops the schema as its owner, the migrating role (MIGRATION_DATABASE_URL).
  await stack?.stop();
  if (!admin) return;
  const database = (await admin.query<{ db: string }>("SELECT current_database() AS db")).rows[0]!.db;
  await admin.query(`REVOKE CREATE ON DATABASE "${database}" FROM ${roles.migration}`).catch(() => undefined);
  await admin.query(`DROP OWNED BY ${roles.migration}, ${roles.runtime}, ${roles.reader}`).catch(() => undefined);
  await admin.query(`DROP ROLE IF EXISTS ${roles.reader}`);
  await admin.query(`DROP ROLE IF EXISTS ${roles.runtime}`);
  await admin.query(`DROP ROLE IF EXISTS ${roles.migration}`);
  await admin.end();
});

/** The SQLSTATE a statement failed with, or "ok". */
const outcome = (sql: string, as = runtime) =>
  as.query(sql).then(
    () => "ok",
    (err: { code?: string }) => err.code ?? String(err),
  );

describe("profile's PostgreSQL roles", () => {
  it("the migrating role owns every table; profile, working as the runtime role, stores pages and clicks and answers", async () => {
    const owners = await admin.query<{ tableowner: string }>("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = $1", [schema]);
    expect(owners.rows.map((r) => r.tableowner)).toEqual([roles.migration]);

    const c = clientsOf(stack);
    const url = "https://example.org/roles/a";
    await c.ingest.publishContent({ pages: [{ url, id: "1", title: "Roles", text: "Least privilege in PostgreSQL" }] });
    await c.ingest.publishClicks({ clicks: [{ userid: "r1", url }] });
    // The page was inserted, the click applied by apply_clicks, the interest read back: all as the runtime role.
    await expect
      .poll(async () => (await c.profile.similarContent({ userid: "r1", limit: 1, includeSeen: true })).items.map((i) => [i.url, i.similarity > 0.99]), {
        timeout: 60_000,
        interval: 250,
      })
      .toEqual([[url, true]]);
    // profile's sessions (not this test's own) are the runtime role's; its migrating one is closed.
    const ours = (await runtime.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    const sessions = await admin.query<{ usename: string }>("SELECT DISTINCT usename FROM pg_stat_activity WHERE usename LIKE $1 AND pid <> $2", [
      `recsys_%_${suffix}`,
      ours,
    ]);
    expect(sessions.rows.map((r) => r.usename)).toContain(roles.runtime);
    expect(sessions.rows.map((r) => r.usename)).not.toContain(roles.migration);
  }, 120_000);

  it("the runtime role cannot drop, create, alter or truncate a table (42501), and the tables stay as they were", async () => {
    const before = (await runtime.query<{ n: number }>("SELECT count(*)::int AS n FROM content")).rows[0]!.n;
    expect(before).toBe(1);
    expect(await outcome("DROP TABLE content")).toBe("42501");
    expect(await outcome("DROP TABLE interests CASCADE")).toBe("42501");
    expect(await outcome("CREATE TABLE intruder (x int)")).toBe("42501");
    expect(await outcome("ALTER TABLE content ADD COLUMN intruder int")).toBe("42501");
    expect(await outcome("TRUNCATE applied_events")).toBe("42501");
    expect(await outcome("CREATE OR REPLACE FUNCTION prune_applied_events(p_retention_ms bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'")).toBe(
      "42501",
    );
    expect(await outcome(`DROP SCHEMA ${schema} CASCADE`)).toBe("42501");
    // Nor rewrite which migrations ran.
    expect(await outcome("DELETE FROM schema_migrations")).toBe("42501");

    expect((await runtime.query<{ n: number }>("SELECT count(*)::int AS n FROM content")).rows[0]!.n).toBe(before);
    const columns = await admin.query("SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'intruder'", [schema]);
    expect(columns.rowCount).toBe(0);
  });

  it("the gateway answers SimilarContent reading as the reader role, as profile answers it; the reader writes nothing (42501)", async () => {
    const c = clientsOf(stack);
    const fromProfile = await c.profile.similarContent({ userid: "r1", limit: 5, includeSeen: true });
    const fromGateway = await c.gateway.similarContent({ userid: "r1", limit: 5, includeSeen: true });
    expect(fromGateway.items.map((i) => [i.url, i.title, i.similarity])).toEqual(fromProfile.items.map((i) => [i.url, i.title, i.similarity]));
    expect(fromGateway.items.map((i) => i.url)).toEqual(["https://example.org/roles/a"]);
    // The gateway has sessions as the reader (besides this test's own).
    const ours = (await reader.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    const sessions = await admin.query("SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND pid <> $2", [roles.reader, ours]);
    expect(sessions.rowCount).toBeGreaterThan(0);

    const pages = (await reader.query<{ n: number }>("SELECT count(*)::int AS n FROM content")).rows[0]!.n;
    expect(pages).toBe(1);
    expect(await outcome("INSERT INTO content (url, title, text) VALUES ('https://example.org/intruder', 'x', 'x')", reader)).toBe("42501");
    expect(await outcome("UPDATE content SET title = 'x'", reader)).toBe("42501");
    expect(await outcome("DELETE FROM interests", reader)).toBe("42501");
    expect(await outcome("TRUNCATE content", reader)).toBe("42501");
    expect(await outcome("SELECT * FROM schema_migrations", reader)).toBe("42501");
    expect(await outcome("CREATE TABLE intruder (x int)", reader)).toBe("42501");
    expect((await reader.query<{ n: number }>("SELECT count(*)::int AS n FROM content")).rows[0]!.n).toBe(pages);
  }, 60_000);
});
