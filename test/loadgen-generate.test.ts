import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { readJsonLinesGz } from "./harness/files.js";
import { repoRoot, startStack, type TestStack } from "./harness/stack.js";

const run = promisify(execFile);
const loadgen = async (...args: string[]) =>
  (await run(process.execPath, [join(repoRoot, "tools/loadgen/dist/main.js"), ...args], { maxBuffer: 64 << 20 })).stdout;

// Small enough to load in seconds. Users click about 30 times an hour, as in the reference data,
// so a path's 12 followers outnumber the co-visits noise gives any other page of its topic.
const SMALL = ["--users", "400", "--pages", "160", "--topics", "4", "--clicks", "3000", "--paths", "4", "--followers", "12", "--duration", "15"];
const root = mkdtempSync(join(tmpdir(), "loadgen-generate-"));
const dir = (name: string) => join(root, name);
const files = ["content.json.gz", "clickstream.json.gz", "truth.json"];

interface Truth {
  format: string;
  counts: Record<string, number>;
  topics: Array<{ name: string; pages: string[] }>;
  paths: Array<{ topic: string; pages: string[]; followers: string[] }>;
  users: Array<{ userid: string; topic: string | null; clicked: string[]; heldOut: string[] }>;
}

beforeAll(async () => {
  await Promise.all([
    loadgen("generate", "--out", dir("a"), "--seed", "7", ...SMALL),
    loadgen("generate", "--out", dir("b"), "--seed", "7", ...SMALL),
    loadgen("generate", "--out", dir("c"), "--seed", "8", ...SMALL),
  ]);
});

describe("loadgen generate", () => {
  it("writes pages and clicks in the reference format (clicks with their extra fields) and a truth that matches them", () => {
    const pages = readJsonLinesGz<Record<string, string>>(join(dir("a"), "content.json.gz"));
    expect(pages).toHaveLength(160);
    for (const p of pages) {
      expect(Object.keys(p)).toEqual(["id", "url", "title", "text", "_source_time"]);
      expect(p.text!.length).toBeGreaterThan(300);
      expect(p.text!.length).toBeLessThan(700);
    }
    const urls = new Set(pages.map((p) => p.url));
    expect(urls.size).toBe(160);
    expect(new Set(pages.map((p) => p.id)).size).toBe(160);

    const clicks = readJsonLinesGz<Record<string, string | number>>(join(dir("a"), "clickstream.json.gz"));
    expect(clicks).toHaveLength(3000);
    for (const c of clicks) {
      expect(Object.keys(c)).toEqual(["userid", "url", "event_time", "event_type", "seconds_on_page", "viewed_percent"]);
      expect(urls.has(c.url as string)).toBe(true);
      expect(["landing", "link", "search"]).toContain(c.event_type);
    }
    const times = clicks.map((c) => Date.parse(c.event_time as string));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    expect(times[0]).toBeGreaterThanOrEqual(Date.parse("2024-01-02T00:00:00Z"));
    expect(times.at(-1)).toBeLessThan(Date.parse("2024-01-02T00:15:00Z"));

    const truth = JSON.parse(readFileSync(join(dir("a"), "truth.json"), "utf8")) as Truth;
    expect(truth.format).toBe("recsys-synthetic-truth/1");
    expect(truth.topics.map((t) => t.name)).toEqual(["music", "sports", "finance", "weather"]);
    expect(truth.paths).toHaveLength(4);
    for (const path of truth.paths) {
      expect(path.pages).toHaveLength(11);
      expect(path.followers).toHaveLength(12);
      expect(truth.topics.find((t) => t.name === path.topic)!.pages).toEqual(expect.arrayContaining(path.pages));
    }
    expect(truth.users).toHaveLength(400);
    expect(truth.users.filter((u) => u.topic !== null)).toHaveLength(320);
    const clickedBy = new Map<string, Set<string>>();
    for (const c of clicks) (clickedBy.get(c.userid as string) ?? clickedBy.set(c.userid as string, new Set()).get(c.userid as string)!).add(c.url as string);
    for (const u of truth.users) {
      expect(new Set(u.clicked)).toEqual(clickedBy.get(u.userid) ?? new Set());
      if (u.topic === null) continue;
      const topicPages = truth.topics.find((t) => t.name === u.topic)!.pages;
      expect(new Set(u.heldOut)).toEqual(new Set(topicPages.filter((url) => !clickedBy.get(u.userid)?.has(url))));
    }
  });

  it("gives the same bytes for the same seed and other bytes for another", () => {
    for (const f of files) {
      expect(readFileSync(join(dir("b"), f)).equals(readFileSync(join(dir("a"), f))), f).toBe(true);
      expect(readFileSync(join(dir("c"), f)).equals(readFileSync(join(dir("a"), f))), f).toBe(false);
    }
  });

  it("refuses options it cannot satisfy, naming them", async () => {
    await expect(loadgen("generate", "--out", dir("bad"), ...SMALL, "--paths", "40")).rejects.toMatchObject({ stderr: expect.stringContaining("--paths") });
    await expect(loadgen("generate", "--out", dir("bad"), "--topics", "15")).rejects.toMatchObject({ stderr: expect.stringContaining("--topics") });
    await expect(loadgen("generate", "--out", dir("bad"), "--noise", "2")).rejects.toMatchObject({ stderr: expect.stringContaining("--noise") });
  });
});

describe("loadgen evaluate on a stack fed the generated workload", () => {
  let stack: TestStack;
  let replayed: { accepted: number; rejected: number; duplicates: number; late: number; lastStreamSequence: string };
  let loaded: { accepted: number; rejected: number; pagesStored: number };

  beforeAll(async () => {
    stack = await startStack("generate");
    const c = clientsOf(stack);
    // As fast as the stack takes them, waiting until applied; the summary as JSON.
    const allOf = async (command: string, file: string, ...targets: string[]) =>
      JSON.parse(await loadgen(command, join(dir("a"), file), "--rate", "0", "--wait", "--json", "--target", stack.url.ingest, ...targets));
    loaded = await allOf("content", "content.json.gz", "--embedder", stack.url.embedder, "--profile", stack.url.profile);
    // 200 clicks a batch: the 3,000 clicks span 15 minutes, so three batches (two in flight and
    // the one that may overtake the first) stay within the 5 minutes covisit waits for late clicks.
    replayed = await allOf("replay", "clickstream.json.gz", "--covisit", stack.url.covisit);
    // replay --wait waits for covisit; SimilarContent needs profile to have folded in every click too.
    const last = BigInt(replayed.lastStreamSequence);
    for (let i = 0; i < 300; i++) {
      const p = await c.profile.progress({});
      if (p.clicksAckFloor >= last && p.parkedClicks === 0n) break;
      await sleep(100);
    }
  });
  afterAll(async () => stack?.stop());

  it("takes every page and every click: the extra click fields change nothing, no click is late", () => {
    expect(loaded).toMatchObject({ accepted: 160, rejected: 0, pagesStored: 160 });
    expect(replayed).toMatchObject({ accepted: 3000, rejected: 0, duplicates: 0, late: 0 });
  });

  it("finds the planted paths and the users' topics far above the random baseline", async () => {
    const report = JSON.parse(await loadgen("evaluate", "--truth", join(dir("a"), "truth.json"), "--gateway", stack.url.gateway, "--json"));
    const { recommendation: rec, similarContent: sim } = report;
    expect(report).toMatchObject({ k: 10, pages: 160 });
    // Each of a path's 10 later pages has at least 12 co-visits from its first page (one per
    // follower); no other page reaches that (the unit tests check the margin on the exact counts),
    // and the service counts exactly: the whole top 10 is the path.
    expect(rec.queries).toBe(4);
    expect(rec.idealPrecisionAtK).toBe(1);
    expect(rec.precisionAtK).toBeGreaterThanOrEqual(0.8);
    expect(rec.recallAtK).toBeGreaterThanOrEqual(0.8);
    expect(rec.randomPrecisionAtK).toBeLessThan(0.1);
    // A user's interest is the mean of the pages they clicked, 85% of their browsing on their
    // topic, and pages of one topic share most of their weighted words, so the nearest unclicked
    // pages are of that topic; random picks hit a quarter of the time or less.
    const truth = JSON.parse(readFileSync(join(dir("a"), "truth.json"), "utf8")) as Truth;
    expect(sim.queries).toBe(truth.users.filter((u) => u.topic !== null && u.clicked.length > 0).length);
    expect(sim.queries).toBeGreaterThan(300);
    expect(sim.precisionAtK).toBeGreaterThanOrEqual(0.8);
    expect(sim.randomPrecisionAtK).toBeLessThan(0.3);
    expect(sim.withClicked.precisionAtK).toBeGreaterThanOrEqual(0.8);

    const text = await loadgen("evaluate", "--truth", join(dir("a"), "truth.json"), "--gateway", stack.url.gateway);
    expect(text).toMatch(/^Recommendation\s+4\s+\d\.\d{3}/m);
    expect(text).toMatch(new RegExp(`^SimilarContent\\s+${sim.queries}\\s+\\d\\.\\d{3}`, "m"));
  });
});
