import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { repoRoot, startStack, type TestStack } from "./harness/stack.js";

// Debian's Chromium, installed by scripts/bootstrap.sh: no browser build can be downloaded here.
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT = join(repoRoot, "test/artifacts/dashboard.png");

const A = "https://en.wikipedia.org/wiki/Apache_Kafka";
const B = "https://en.wikipedia.org/wiki/Apache_Flink";
const C = "https://en.wikipedia.org/wiki/Zoop";
const PAGES = [
  { url: A, title: "Apache Kafka", text: "Apache Kafka is a distributed event store and stream-processing platform." },
  { url: B, title: "Apache Flink", text: "Apache Flink is a framework for stateful computations over data streams." },
  // Markup in a title must reach the page as text.
  { url: C, title: "Zoop <b>puzzle</b>", text: "Zoop is a puzzle video game released in 1995." },
];

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
let profileDir: string;
let browser: BrowserContext;
let page: Page;
const requested: string[] = [];
const consoleErrors: string[] = [];

const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const numberIn = async (selector: string) => Number((await page.textContent(selector))!.replace(/,/g, ""));
async function until(what: string, done: () => Promise<boolean>, timeoutMs = 20_000) {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) if (await done()) return;
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}
/** The text of every cell of a table body, row by row. */
const cellsOf = (tbody: string) => page.locator(`${tbody} tr`).evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? "")));

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/bootstrap.sh (it installs Debian's chromium)`);
  profileDir = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));
  const launching = chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1280, height: 900 },
  });
  stack = await startStack("dashboard");
  c = clientsOf(stack);
  browser = await launching;
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("request", (r) => requested.push(r.url()));
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  for (const p of PAGES) await c.gateway.content({ event: p });
  // u1 reads A, then B within 10 minutes.
  await c.gateway.clickstream({ event: { userid: "u1", url: A, eventTime: ago(60_000) } });
  await c.gateway.clickstream({ event: { userid: "u1", url: B, eventTime: ago(30_000) } });
  await until("covisit counted u1's clicks", async () => (await c.gateway.recommendation({ url: A })).items.length === 1);
  await until("profile stored the pages and folded in u1's clicks", async () => {
    const p = await c.profile.progress({});
    return p.pages === 3n && p.clicksAckFloor >= 2n && p.parkedClicks === 0n;
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  await stack?.stop();
});

describe("the dashboard at GET / on the gateway", () => {
  it("shows live numbers, answers both forms, and updates over server-sent events", async () => {
    await page.goto(`${stack.url.gateway}/`);
    await expect.poll(() => page.textContent("#live")).toBe("live");

    // Every backend up, the consumers' lag listed, the embedder's batches counted.
    await expect
      .poll(async () => (await cellsOf("#services")).map((r) => r.slice(0, 3)))
      .toEqual([
        ["ingest", "up", "yes"],
        ["covisit", "up", "yes"],
        ["embedder", "up", "yes"],
        ["profile", "up", "yes"],
      ]);
    const lag = await cellsOf("#lag");
    // One row per durable consumer of covisit, embedder and profile, each with a count.
    expect(lag.map((r) => r[0])).toEqual(expect.arrayContaining(["covisit", "embedder", "profile-clicks", "profile-embeddings"]));
    for (const r of lag) expect(r[2]).toMatch(/^\d[\d,]*$/);
    expect(await numberIn("#batch-mean")).toBeGreaterThanOrEqual(1);
    await expect.poll(() => numberIn("#clicks-applied")).toBe(2);

    // The co-visits of A: B, once.
    await page.fill("#recommendation-url", A);
    await page.click("#recommendation-form button");
    await expect.poll(() => page.locator("#recommendation-results tr").count()).toBe(1);
    expect(await cellsOf("#recommendation-results")).toEqual([[B, "1"]]);

    // u1's similar pages: only the one not read yet, its markup as text; with the pages read, those two first, closest.
    await page.fill("#similar-userid", "u1");
    await page.click("#similar-form button");
    await expect.poll(() => page.locator("#similar-results tr").count()).toBe(1);
    expect((await cellsOf("#similar-results"))[0]![0]).toBe(`Zoop <b>puzzle</b> — ${C}`);
    await page.check("#similar-seen");
    await page.click("#similar-form button");
    await expect.poll(() => page.locator("#similar-results tr").count()).toBe(3);
    const rows = await cellsOf("#similar-results");
    expect(
      rows
        .slice(0, 2)
        .map((r) => r[0])
        .sort(),
    ).toEqual([`Apache Flink — ${B}`, `Apache Kafka — ${A}`]);
    expect(rows[2]![0]).toBe(`Zoop <b>puzzle</b> — ${C}`);
    expect(await page.locator("#similar-results b").count()).toBe(0);
    for (const r of rows.slice(0, 2)) expect(Number(r[1])).toBeGreaterThan(0.5);

    // More clicks while the page is open: the counter and the rate move without a reload.
    for (let i = 0; i < 4; i++) await c.gateway.clickstream({ event: { userid: `u${i + 2}`, url: [A, B, C][i % 3]! } });
    await page.waitForFunction(
      () =>
        Number(document.getElementById("clicks-applied")!.textContent!.replace(/,/g, "")) === 6 &&
        Number(document.getElementById("clicks-rate")!.textContent) > 0,
      undefined,
      { timeout: 10_000 },
    );

    mkdirSync(join(repoRoot, "test/artifacts"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Offline: nothing but the gateway was asked for, and nothing failed in the page.
    expect(requested.filter((u) => !u.startsWith(`${stack.url.gateway}/`))).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it("shows a refusal from the gateway instead of results", async () => {
    await page.fill("#recommendation-url", "not a url");
    await page.click("#recommendation-form button");
    await expect.poll(() => page.textContent("#recommendation-form .message")).toMatch(/^invalid_argument: url: /);
    expect(await page.locator("#recommendation-results tr").count()).toBe(0);
  });
});
