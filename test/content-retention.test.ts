import { afterAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { startStack, type TestStack } from "./harness/stack.js";
import { refusal, streamState } from "./harness/streams.js";

// CONTENT refuses pages when full, as every event stream does. Without an age it filled once for good: 1 GiB is about 1.2
// million page versions, ever; from then on every page was refused. Like CLICKS and ENGAGEMENT, it keeps its page versions for
// CONTENT_MAX_AGE_MS (7 days; a few seconds here), so its size bounds a rate, not a lifetime. The embedder has embedded them by
// then: EMBEDDINGS keeps each url's newest embedding and profile its page; the archive keeps the versions.

const MAX_AGE_MS = 12_000;
const LIMIT = 64 * 1024;

let stack: TestStack | undefined;
afterAll(async () => {
  await stack?.stop();
});

describe("CONTENT past its age", () => {
  it("drops page versions older than CONTENT_MAX_AGE_MS, so a full stream takes pages again, and the older pages are still served", async () => {
    stack = await startStack("contentage", { CONTENT_MAX_BYTES: String(LIMIT), CONTENT_MAX_AGE_MS: String(MAX_AGE_MS) });
    const c = clientsOf(stack);
    const catalogue = async () => (await c.gateway.events({ limit: 1000 })).items.map((e) => e.url).sort();
    const page = (url: string, words: string) => ({ url, title: url.slice(url.lastIndexOf("/") + 1), text: `${words} `.repeat(4_000 / (words.length + 1)) });

    // A page before the others: its version leaves the stream with theirs, and its page stays in the catalogue.
    await c.ingest.publishContent({ pages: [page("https://e.org/before", "gardens")] });
    await expect.poll(catalogue, { timeout: 30_000, interval: 200 }).toEqual(["https://e.org/before"]);

    // Pages of about 4 KB, four a call, until CONTENT is full.
    let why: string | undefined;
    let calls = 0;
    for (; calls < 100 && why === undefined; calls++) {
      why = await refusal(() =>
        c.ingest.publishContent({ pages: Array.from({ length: 4 }, (_, i) => page(`https://e.org/fill/${calls}-${i}`, `words of page ${calls} ${i}`)) }),
      );
    }
    expect(why).toMatch(/^ResourceExhausted: pages: .*CONTENT is full/);
    expect(calls).toBeGreaterThan(2);
    const filled = calls - 1;

    // Once the versions it holds are older than the age, a new page is taken, and the embedder and profile make it a page.
    await expect
      .poll(() => refusal(() => c.ingest.publishContent({ pages: [page("https://e.org/after", "bicycles")] })), {
        timeout: MAX_AGE_MS + 30_000,
        interval: 500,
      })
      .toBeUndefined();
    await expect.poll(async () => (await catalogue()).includes("https://e.org/after"), { timeout: 30_000, interval: 200 }).toBe(true);

    // The stream dropped its old versions (the first was "before"'s), and every page taken is still in the catalogue.
    const state = await streamState(stack, "CONTENT");
    expect(state.first_seq).toBeGreaterThan(1);
    expect(state.bytes).toBeLessThan(LIMIT);
    const pages = await catalogue();
    expect(pages).toContain("https://e.org/before");
    expect(pages.filter((u) => u.startsWith("https://e.org/fill/")).length).toBe(filled * 4);
  }, 120_000);
});
