import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { repoRoot, startStack, type TestStack } from "./harness/stack.js";

const run = promisify(execFile);
let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
const dir = mkdtempSync(join(tmpdir(), "loadgen-"));

// One user reading a, b, c two minutes apart, then d 30 minutes later (outside every window),
// and a line with a bad url. Co-visits by hand: a→b, a→c, b→c.
const A = "https://e.org/a",
  B = "https://e.org/b",
  C = "https://e.org/c";
const lines = [
  { userid: "u1", url: A, event_time: "2024-01-02T00:00:00Z" },
  { userid: "u1", url: B, event_time: "2024-01-02T00:02:00Z" },
  { userid: "u1", url: "not a url", event_time: "2024-01-02T00:03:00Z" },
  { userid: "u1", url: C, event_time: "2024-01-02T00:04:00Z" },
  { userid: "u1", url: "https://e.org/d", event_time: "2024-01-02T00:34:00Z" },
];
const file = join(dir, "clicks.json.gz");
writeFileSync(file, gzipSync(`${lines.map((l) => JSON.stringify(l)).join("\n")}\n`));

async function loadgen(...args: string[]) {
  const { stdout, stderr } = await run(process.execPath, [
    join(repoRoot, "tools/loadgen/dist/main.js"),
    "replay",
    file,
    "--target",
    stack.url.ingest,
    "--covisit",
    stack.url.covisit,
    ...args,
  ]);
  return { stdout, stderr };
}

async function after(url: string) {
  return (await c.gateway.recommendation({ url, limit: 10 })).items.map((i) => [i.recommendation, Number(i.frequency)]);
}

beforeAll(async () => {
  stack = await startStack("loadgen");
  c = clientsOf(stack);
});
afterAll(async () => stack?.stop());

describe("loadgen replay", () => {
  it("replays a gzipped file, reports rejected lines by field, and --wait returns with every click visible", async () => {
    const { stdout, stderr } = await loadgen("--rate", "0", "--wait", "--json");
    const s = JSON.parse(stdout);
    expect(s).toMatchObject({ sent: 5, accepted: 4, rejected: 1, duplicates: 0, late: 0, retries: 0 });
    expect(s.rejections).toEqual([{ line: 3, field: "url", reason: expect.any(String) }]);
    expect(stderr).toContain("rejected line 3: url:");
    expect(await after(A)).toEqual([
      [B, 1],
      [C, 1],
    ]);
    expect(await after(B)).toEqual([[C, 1]]);
    expect(await after(C)).toEqual([]);
  });

  it("a second replay is all duplicates and changes no count; the text summary says so", async () => {
    const { stdout } = await loadgen("--rate", "0", "--wait");
    expect(stdout.trim()).toMatch(/^sent=5 accepted=4 rejected=1 duplicates=4 late=0 retries=0 elapsed=\S+s clicks\/s=\d+ ack_p50=\S+ms ack_p99=\S+ms$/);
    expect(await after(A)).toEqual([
      [B, 1],
      [C, 1],
    ]);
  });

  it("--shift-time makes new clicks near now with the same gaps, so the pairs count again", async () => {
    const s = JSON.parse((await loadgen("--rate", "0", "--wait", "--json", "--shift-time")).stdout);
    expect(s).toMatchObject({ accepted: 4, duplicates: 0, late: 0 });
    expect(await after(A)).toEqual([
      [B, 2],
      [C, 2],
    ]);
    expect(await after(B)).toEqual([[C, 2]]);
    expect(await after(C)).toEqual([]);
  });

  it("--rate paces the clicks: five clicks at 10/s take at least 0.4 s", async () => {
    const t0 = performance.now();
    await loadgen("--rate", "10");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(400);
  });

  it("counts in its summary the clicks covisit dead-lettered as later than the allowed lateness", async () => {
    const lateFile = join(dir, "late.json");
    writeFileSync(
      lateFile,
      [
        { userid: "u-late", url: A, event_time: "2024-01-02T01:00:00Z" },
        // 10 minutes older than the user's newest click, past the 5 minutes allowed.
        { userid: "u-late", url: B, event_time: "2024-01-02T00:50:00Z" },
      ]
        .map((l) => JSON.stringify(l))
        .join("\n"),
    );
    const { stdout } = await run(process.execPath, [
      join(repoRoot, "tools/loadgen/dist/main.js"),
      "replay",
      lateFile,
      "--target",
      stack.url.ingest,
      "--covisit",
      stack.url.covisit,
      "--rate",
      "0",
      "--wait",
      "--json",
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ sent: 2, accepted: 2, late: 1 });
  });

  it("refuses a bad option with a message naming it", async () => {
    await expect(loadgen("--rate", "-3")).rejects.toMatchObject({ stderr: expect.stringContaining("--rate") });
  });

  it("replays the reference pipelines' formats: every line accepted, typed clicks count as visits", async () => {
    const formats = {
      redpanda: [
        {
          timestamp: "2024-01-03T00:00:00Z",
          event: "view_item",
          user_id: "rp-1",
          site_id: "s-1",
          url: "https://e.org/rp/a",
          on_site_seconds: 5,
          viewed_percent: 50,
        },
        {
          timestamp: "2024-01-03T00:01:00Z",
          event: "add_to_cart",
          user_id: "rp-1",
          site_id: "s-1",
          url: "https://e.org/rp/b",
          on_site_seconds: 9,
          viewed_percent: 90,
        },
      ],
      aws: [
        {
          timestamp: 1704240000,
          user_id: "aws-1",
          event_name: "ViewContent",
          click_id: "k1",
          user_ip: "10.0.0.1",
          additional_data: { product_id: "p1", price: 5 },
        },
        {
          timestamp: 1704240060,
          user_id: "aws-1",
          event_name: "AddToCart",
          click_id: "k2",
          user_ip: "10.0.0.1",
          additional_data: { product_id: "p2", price: 7.5 },
        },
      ],
    };
    for (const [format, rows] of Object.entries(formats)) {
      const path = join(dir, `${format}.json`);
      writeFileSync(path, rows.map((l) => JSON.stringify(l)).join("\n"));
      const { stdout } = await run(process.execPath, [
        join(repoRoot, "tools/loadgen/dist/main.js"),
        "replay",
        path,
        "--target",
        stack.url.ingest,
        "--covisit",
        stack.url.covisit,
        "--product-url",
        "https://e.org/products/{product_id}",
        "--rate",
        "0",
        "--wait",
        "--json",
      ]);
      expect(JSON.parse(stdout), format).toMatchObject({ sent: 2, accepted: 2, rejected: 0 });
    }
    expect(await after("https://e.org/rp/a")).toEqual([["https://e.org/rp/b", 1]]);
    expect(await after("https://e.org/products/p1")).toEqual([["https://e.org/products/p2", 1]]);
  });
});
