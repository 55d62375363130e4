import { afterEach, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { startStack, type TestStack } from "./harness/stack.js";
import { refusal, streamState as stateOf } from "./harness/streams.js";

// ENGAGEMENT and INTEREST_EMBEDDINGS refuse when full, as every event stream does. Without an age they filled once for good:
// 256 MiB is about a million likes, or 140,000 stated interests' embeddings, ever; from then on every user's likes or interests
// were refused. Like CLICKS, they keep their events for ENGAGEMENT_MAX_AGE_MS and INTEREST_EMBEDDINGS_MAX_AGE_MS (7 days; a few
// seconds here), so their size bounds a rate, not a lifetime. The archive keeps ENGAGEMENT's events for good.

const MAX_AGE_MS = 12_000;
// Filling INTEREST_EMBEDDINGS takes a few seconds (each interest embedded before the next call): its age leaves room for it.
const INTEREST_MAX_AGE_MS = 15_000;
const LIMIT = 64 * 1024;

let stack: TestStack | undefined;
afterEach(async () => {
  await stack?.stop();
  stack = undefined;
});

const streamState = (name: string) => stateOf(stack!, name);

describe("ENGAGEMENT past its age", () => {
  it("drops likes older than ENGAGEMENT_MAX_AGE_MS, so a full stream takes likes again and profile applies them", async () => {
    stack = await startStack("engagementage", { ENGAGEMENT_MAX_BYTES: String(LIMIT), ENGAGEMENT_MAX_AGE_MS: String(MAX_AGE_MS) });
    const c = clientsOf(stack);
    await c.ingest.publishContent({ pages: [{ url: "https://e.org/liked", id: "9001", title: "Liked", text: "A page people like." }] });
    // A like before the others: it leaves the stream with them, and profile keeps it.
    await c.ingest.publishLikes({ likes: [{ userid: "before", pageId: "9001", liked: true, eventId: "b1" }] });
    const likedBy = async (userid: string) => (await c.gateway.eventsLiked({ userid })).items.map((e) => e.id);
    await expect.poll(() => likedBy("before"), { timeout: 30_000, interval: 200 }).toEqual(["9001"]);

    // Likes and unlikes of 40 users, 50 a call, until ENGAGEMENT is full.
    let why: string | undefined;
    let calls = 0;
    for (; calls < 200 && why === undefined; calls++) {
      why = await refusal(() =>
        c.ingest.publishLikes({
          likes: Array.from({ length: 50 }, (_, i) => ({ userid: `u${i % 40}`, pageId: "9001", liked: (calls + i) % 2 === 0, eventId: `l${calls}-${i}` })),
        }),
      );
    }
    expect(why).toMatch(/^ResourceExhausted: likes: .*ENGAGEMENT is full/);
    expect(calls).toBeGreaterThan(3);

    // Once the likes it holds are older than the age, a new user's like is taken, and profile applies it.
    await expect
      .poll(() => refusal(() => c.ingest.publishLikes({ likes: [{ userid: "after", pageId: "9001", liked: true, eventId: "a1" }] })), {
        timeout: MAX_AGE_MS + 30_000,
        interval: 500,
      })
      .toBeUndefined();
    await expect.poll(() => likedBy("after"), { timeout: 30_000, interval: 200 }).toEqual(["9001"]);
    // The stream dropped its old likes (the first was "before"'s), and profile still has them.
    const state = await streamState("ENGAGEMENT");
    expect(state.first_seq).toBeGreaterThan(1);
    expect(state.bytes).toBeLessThan(LIMIT);
    expect(await likedBy("before")).toEqual(["9001"]);
  }, 120_000);
});

describe("INTEREST_EMBEDDINGS past its age", () => {
  it("drops embeddings older than INTEREST_EMBEDDINGS_MAX_AGE_MS, so ingest takes stated interests again once it was full", async () => {
    stack = await startStack(
      "interestage",
      { INTEREST_EMBEDDINGS_MAX_BYTES: String(LIMIT), INTEREST_EMBEDDINGS_MAX_AGE_MS: String(INTEREST_MAX_AGE_MS) },
      { services: ["ingest", "embedder", "profile"] },
    );
    const c = clientsOf(stack);

    // About 34 embeddings (1.9 KB each) fit in 64 KiB: interests of 20 users, 5 a call, each call embedded before the next.
    let why: string | undefined;
    let accepted = 0;
    for (let call = 0; call < 40 && why === undefined; call++) {
      why = await refusal(() =>
        c.ingest.publishInterests({ interests: Array.from({ length: 5 }, (_, i) => ({ userid: `u${(call * 5 + i) % 20}`, text: `interest ${call}-${i}` })) }),
      );
      if (why === undefined) accepted += 5;
      await expect
        .poll(
          async () => {
            const state = await streamState("INTEREST_EMBEDDINGS");
            return state.last_seq >= accepted || state.bytes >= LIMIT;
          },
          { timeout: 10_000 },
        )
        .toBe(true);
      await new Promise((r) => setTimeout(r, 600));
    }
    expect(why).toMatch(/^ResourceExhausted: interests: .*INTEREST_EMBEDDINGS is full/);

    await expect
      .poll(() => refusal(() => c.ingest.publishInterests({ interests: [{ userid: "after", text: "bicycles", eventId: "a1" }] })), {
        timeout: INTEREST_MAX_AGE_MS + 30_000,
        interval: 500,
      })
      .toBeUndefined();
    // The embedder made its embedding: the stream holds it, with the older ones gone.
    await expect.poll(async () => (await streamState("INTEREST_EMBEDDINGS")).first_seq, { timeout: 30_000 }).toBeGreaterThan(1);
    await expect.poll(async () => (await streamState("INTEREST_EMBEDDINGS")).last_seq, { timeout: 30_000 }).toBeGreaterThan(accepted);
  }, 120_000);
});
