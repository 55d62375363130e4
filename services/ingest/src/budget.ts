import { Code } from "@connectrpc/connect";
import { FieldError } from "@recsys/validation";
import type { ValidClick } from "./clicks.js";

/**
 * Each user's click budget, checked before anything is published: covisit's rule, applied early so the client hears of it.
 * Kept per process for the `maxUsers` users seen last, and at most `maxClicks` clicks of theirs in all (users seen longest ago go
 * first): with several ingest replicas each admits up to the budget, and covisit's check holds. Users alone did not bound it: a
 * user keeps up to two windows of clicks (120 at the default budget), 25-40 KB, so 100,000 busy users took gigabytes. A click
 * kept takes about 230 bytes of heap (1,000,000 of 32-character ids: 230 MB), so 500,000 take about 115 MB.
 */
export class ClickBudget {
  /** userid -> event id -> event time; a Map keeps insertion order, so the first user is the one seen longest ago. */
  private readonly users = new Map<string, Map<string, number>>();
  /** Clicks kept, over every user. */
  private kept = 0;

  constructor(
    readonly budget: number,
    readonly windowMs: number,
    readonly maxUsers = 100_000,
    readonly maxClicks = 500_000,
  ) {}

  /**
   * Takes room for the clicks, in order; each refused one gets a FieldError (ResourceExhausted,
   * naming userid). `release` gives back what was taken, for when the publish failed.
   */
  admit(clicks: ValidClick[]): { refused: Array<FieldError | undefined>; release(): void } {
    const taken: ValidClick[] = [];
    /** The clicks forgotten to make room, put back if the publish fails: its clicks were never stored. */
    const forgotten: Array<{ userid: string; eventId: string; t: number }> = [];
    const refused = clicks.map((c) => {
      const recent = this.recentOf(c.userid);
      if (recent.has(c.eventId)) return undefined;
      let near = 0;
      for (const t of recent.values()) if (Math.abs(t - c.eventTimeMs) <= this.windowMs) near++;
      if (near >= this.budget) {
        return new FieldError(
          "userid",
          `over its click budget: ${near} clicks within ${this.windowMs / 60_000} minutes of this one, at most ${this.budget} are accepted`,
          Code.ResourceExhausted,
        );
      }
      recent.set(c.eventId, c.eventTimeMs);
      this.kept++;
      taken.push(c);
      for (const [eventId, t] of this.forgetOld(recent)) forgotten.push({ userid: c.userid, eventId, t });
      this.evictOver();
      return undefined;
    });
    return {
      refused,
      release: () => {
        for (const c of taken) if (this.users.get(c.userid)?.delete(c.eventId)) this.kept--;
        // A click of the failed call, later than the user's others, had them forgotten: without them the user's earlier
        // window was free again, for another budget's worth.
        for (const f of forgotten) {
          const recent = this.users.get(f.userid);
          if (recent && !recent.has(f.eventId)) {
            recent.set(f.eventId, f.t);
            this.kept++;
          }
        }
        this.evictOver();
      },
    };
  }

  private recentOf(userid: string): Map<string, number> {
    let recent = this.users.get(userid);
    if (recent) this.users.delete(userid);
    else recent = new Map();
    this.users.set(userid, recent);
    if (this.users.size > this.maxUsers) this.forgetUser(this.users.keys().next().value!);
    return recent;
  }

  /** Forgets the users seen longest ago while more than `maxClicks` clicks are kept; never the one seen last. */
  private evictOver(): void {
    while (this.kept > this.maxClicks && this.users.size > 1) this.forgetUser(this.users.keys().next().value!);
  }

  private forgetUser(userid: string): void {
    this.kept -= this.users.get(userid)?.size ?? 0;
    this.users.delete(userid);
  }

  /** Clicks kept, over every user (at most `maxClicks`, but for the user seen last). */
  get size(): number {
    return this.kept;
  }

  /**
   * Clicks more than two windows before the user's latest can no longer share a window with one that is not late: forgets them,
   * and says which they were.
   */
  private forgetOld(recent: Map<string, number>): Array<[string, number]> {
    let latest = -Infinity;
    for (const t of recent.values()) latest = Math.max(latest, t);
    const old: Array<[string, number]> = [];
    for (const [id, t] of recent) {
      if (t < latest - 2 * this.windowMs) {
        old.push([id, t]);
        recent.delete(id);
        this.kept--;
      }
    }
    return old;
  }
}
