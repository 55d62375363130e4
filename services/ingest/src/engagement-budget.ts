import { Code } from "@connectrpc/connect";
import { FieldError, LIMITS } from "@recsys/validation";
import { LeakyBuckets } from "./leaky-buckets.js";
import type { Published } from "./publisher.js";

/** The window of a user's engagement budget. */
export const ENGAGEMENT_BUDGET_WINDOW_MS = 3_600_000;

/**
 * The most one like or interest costs of a budget: the longest interest in ENGAGEMENT (text, userid and event id at 4 bytes a
 * character at most) and its embedding of `dimension` floats in INTEREST_EMBEDDINGS (the userid and event id again), with room
 * for each message's subject, id, times, model and headers. A budget smaller than this would refuse such an interest for good.
 */
export const maxEngagementCost = (dimension: number) => LIMITS.textBytes + 4 * dimension + 2 * (LIMITS.useridBytes + 4 * LIMITS.eventIdChars + 1024);

/**
 * The bytes of likes and stated interests of one user that ingest publishes to ENGAGEMENT within an hour, with what their
 * embeddings take in INTEREST_EMBEDDINGS (about 1.8 KB each at 384 dimensions), by default. Both streams refuse every event once
 * full (256 MiB each by default), and they are shared: without a budget one user's token, at the gateway's 600 mutations a
 * minute, filled ENGAGEMENT with 32 KiB interests in about 14 minutes, and from then on every user's likes and interests were
 * refused. At 1 MiB an hour one user needs more than 10 days; a like takes about 300 bytes, so a user may still like some 3,000
 * pages in one go, state 500 short interests, or 30 of the longest text.
 */
export const DEFAULT_USER_ENGAGEMENT_BUDGET_BYTES = 1024 * 1024;

/**
 * Each user's engagement budget, checked before anything is published: a generic cell rate (a leaky bucket) over the bytes each
 * event costs in the streams. A user may spend the whole budget at once; it then comes back at the budget's rate, so over any
 * hour a user publishes at most twice the budget, over a day at most 25 times. One bucket per user (LeakyBuckets), for at most
 * `maxUsers` users seen last (about 150 bytes each); a user forgotten before that starts with a full budget again. With several
 * ingest replicas each admits up to the budget.
 */
export class EngagementBudget {
  private readonly buckets: LeakyBuckets;

  constructor(
    readonly budgetBytes: number,
    readonly windowMs = ENGAGEMENT_BUDGET_WINDOW_MS,
    readonly maxUsers = 100_000,
    private readonly now: () => number = Date.now,
  ) {
    this.buckets = new LeakyBuckets(budgetBytes, windowMs, maxUsers);
  }

  /**
   * Takes room for the events, in order, each `bytes` as the streams will store it; each refused one gets a FieldError
   * (ResourceExhausted, naming userid). Then exactly one of: `keep` once the events are stored, which gives back what the
   * duplicates took (JetStream stored nothing for them); `release` when the publish failed, which gives back all of it.
   */
  admit(events: Array<{ userid: string; bytes: number }>): {
    refused: Array<FieldError | undefined>;
    release(): void;
    keep(published: Published[]): void;
  } {
    const now = this.now();
    /** The events admitted, in the order of `keep`'s `published`. */
    const taken: Array<{ userid: string; bytes: number }> = [];
    const refused = events.map((e) => {
      const waitMs = this.buckets.take(e.userid, e.bytes, now);
      if (waitMs !== undefined) {
        return new FieldError(
          "userid",
          `over its engagement budget: at most ${this.budgetBytes} bytes of likes and stated interests an hour (this one takes ${e.bytes}); retry in ${Math.ceil(waitMs / 1000)} s`,
          Code.ResourceExhausted,
        );
      }
      taken.push(e);
      return undefined;
    });
    const giveBack = (t: { userid: string; bytes: number }) => this.buckets.giveBack(t.userid, t.bytes);
    return {
      refused,
      release: () => taken.forEach(giveBack),
      keep: (published) => taken.forEach((t, j) => published[j]?.duplicate && giveBack(t)),
    };
  }

  /** Users kept: at most `maxUsers`, and those seen longest ago go as soon as their spending is paid off. */
  get size(): number {
    return this.buckets.size;
  }
}
