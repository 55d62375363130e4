import { Code } from "@connectrpc/connect";
import { FieldError, LIMITS } from "@recsys/validation";
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
 * hour a user publishes at most twice the budget, over a day at most 25 times. One number per user (when its spending is paid
 * off), for at most `maxUsers` users seen last (about 150 bytes each); a user forgotten before that starts with a full budget
 * again. With several ingest replicas each admits up to the budget.
 */
export class EngagementBudget {
  /** userid -> the time at which the user's spending is paid off (ms); a Map keeps insertion order: the first was seen longest ago. */
  private readonly paidOffAt = new Map<string, number>();
  /** How long a byte of spending takes to be paid off. */
  private readonly msPerByte: number;

  constructor(
    readonly budgetBytes: number,
    readonly windowMs = ENGAGEMENT_BUDGET_WINDOW_MS,
    readonly maxUsers = 100_000,
    private readonly now: () => number = Date.now,
  ) {
    this.msPerByte = windowMs / budgetBytes;
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
    /** What each admitted event took, in the order of `keep`'s `published`. */
    const taken: Array<{ userid: string; ms: number }> = [];
    const refused = events.map((e) => {
      const from = Math.max(this.paidOffAt.get(e.userid) ?? now, now);
      const until = from + e.bytes * this.msPerByte;
      if (until - now > this.windowMs) {
        // Refused, still seen: a user kept busy by refusals is not the first to be forgotten.
        const owed = this.paidOffAt.get(e.userid);
        if (owed !== undefined) this.set(e.userid, owed, now);
        const retryS = Math.ceil((until - now - this.windowMs) / 1000);
        return new FieldError(
          "userid",
          `over its engagement budget: at most ${this.budgetBytes} bytes of likes and stated interests an hour (this one takes ${e.bytes}); retry in ${retryS} s`,
          Code.ResourceExhausted,
        );
      }
      this.set(e.userid, until, now);
      taken.push({ userid: e.userid, ms: until - from });
      return undefined;
    });
    const giveBack = (t: { userid: string; ms: number }) => {
      const at = this.paidOffAt.get(t.userid);
      if (at !== undefined) this.paidOffAt.set(t.userid, at - t.ms);
    };
    return {
      refused,
      release: () => taken.forEach(giveBack),
      keep: (published) => taken.forEach((t, j) => published[j]?.duplicate && giveBack(t)),
    };
  }

  /** Users kept: at most `maxUsers`, and those seen longest ago go as soon as their spending is paid off. */
  get size(): number {
    return this.paidOffAt.size;
  }

  private set(userid: string, until: number, now: number): void {
    this.paidOffAt.delete(userid);
    this.paidOffAt.set(userid, until);
    for (const [first, at] of this.paidOffAt) {
      if (at > now && this.paidOffAt.size <= this.maxUsers) break;
      this.paidOffAt.delete(first);
    }
  }
}
