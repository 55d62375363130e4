import { Code } from "@connectrpc/connect";
import { FieldError } from "@recsys/validation";
import type { ValidClick } from "./clicks.js";
import { LeakyBuckets } from "./leaky-buckets.js";

/**
 * Each user's click budget, checked before anything is published: covisit's rule, applied early so the client hears of it. And
 * a budget of arrivals, whatever the clicks' event times: covisit's rule counts clicks within a window of event time, which the
 * client chooses, so one user sending back-dated clicks, each block of 60 in a window of its own, had every one accepted (at the
 * gateway's 600 a minute, or 10,000 a call from a service), and its pairs filled Redis for every user (about 75 MiB a minute
 * with 2 KiB urls at the gateway's rate). ARRIVALS_PER_BUDGET times the budget arrive within a window: a replay compresses event
 * time (the reference data's busiest user has 82 clicks in its hour, replayed within seconds), a flood of back-dated clicks is
 * held to a tenth of the gateway's rate.
 * Kept per process for the `maxUsers` users seen last, and at most `maxClicks` clicks of theirs in all (users seen longest ago go
 * first): with several ingest replicas each admits up to the budget, and covisit's check holds. Users alone did not bound it: a
 * user keeps up to two windows of clicks (120 at the default budget), 25-40 KB, so 100,000 busy users took gigabytes. A click
 * kept takes about 230 bytes of heap (1,000,000 of 32-character ids: 230 MB), so 500,000 take about 115 MB.
 */
/** How many times the click budget may arrive within a window of the budget, whatever the clicks' event times. */
export const ARRIVALS_PER_BUDGET = 10;

export class ClickBudget {
  /** userid -> event id -> event time; a Map keeps insertion order, so the first user is the one seen longest ago. */
  private readonly users = new Map<string, Map<string, number>>();
  /** Clicks kept, over every user. */
  private kept = 0;
  /**
   * Clicks whose publish is under way, by user and event id: how many calls hold each, the one that took it and any that sent it
   * again meanwhile. A call that fails gives its click back only when none of the others holds it or has stored it.
   */
  private readonly pending = new Map<string, number>();

  /**
   * Each user's arrivals: a leaky bucket of ARRIVALS_PER_BUDGET times `budget` clicks a window, so that many at once and then one
   * every `windowMs` over that many. Kept apart from the clicks above, for at most `maxUsers` users: a user forgotten there to
   * make room for clicks still owes its arrivals.
   */
  private readonly arrivals: LeakyBuckets;

  constructor(
    readonly budget: number,
    readonly windowMs: number,
    readonly maxUsers = 100_000,
    readonly maxClicks = 500_000,
    private readonly now: () => number = Date.now,
  ) {
    this.arrivals = new LeakyBuckets(ARRIVALS_PER_BUDGET * budget, windowMs, maxUsers);
  }

  /**
   * Takes room for the clicks, in order; each refused one gets a FieldError (ResourceExhausted, naming userid). Then exactly one
   * of: `keep` once the clicks are stored; `release` when the publish failed, which gives back what was taken.
   */
  admit(clicks: ValidClick[]): { refused: Array<FieldError | undefined>; release(): void; keep(): void } {
    /** The clicks this call holds: taken here, or sent again while another call's publish of them was under way. */
    const held = new Map<string, { userid: string; eventId: string }>();
    const hold = (c: ValidClick, key: string) => {
      this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
      held.set(key, { userid: c.userid, eventId: c.eventId });
    };
    /** The clicks forgotten to make room, put back if the publish fails: its clicks were never stored. */
    const forgotten: Array<{ userid: string; eventId: string; t: number }> = [];
    /** The users whose arrivals this call took one of, a click each: given back if the publish fails. */
    const arrived: string[] = [];
    const now = this.now();
    /** Takes one of the user's arrivals for the click: a refusal when none is left. */
    const arrive = (c: ValidClick) => {
      const waitMs = this.arrivals.take(c.userid, 1, now);
      if (waitMs !== undefined) {
        return new FieldError(
          "userid",
          `over its click budget: ${this.arrivals.capacity} clicks arrived within ${this.windowMs / 60_000} minutes, whatever their event times; retry in ${Math.ceil(waitMs / 1000)} s`,
          Code.ResourceExhausted,
        );
      }
      arrived.push(c.userid);
      return undefined;
    };
    const refused = clicks.map((c) => {
      const recent = this.recentOf(c.userid);
      const key = `${c.userid}\n${c.eventId}`;
      if (recent.has(c.eventId)) {
        // Not counted twice within the window, but an arrival all the same: it is stored again (a call made of other clicks
        // is another message, whatever the broker's duplicate window), so clicks sent again, or other clicks under the same
        // event id, filled CLICKS for every user when they cost nothing.
        const over = arrive(c);
        if (over) return over;
        // The first call's publish may yet fail: then this one's stores it, and it must still count.
        if (this.pending.has(key) && !held.has(key)) hold(c, key);
        return undefined;
      }
      let near = 0;
      for (const t of recent.values()) if (Math.abs(t - c.eventTimeMs) <= this.windowMs) near++;
      if (near >= this.budget) {
        return new FieldError(
          "userid",
          `over its click budget: ${near} clicks within ${this.windowMs / 60_000} minutes of this one, at most ${this.budget} are accepted`,
          Code.ResourceExhausted,
        );
      }
      const over = arrive(c);
      if (over) return over;
      recent.set(c.eventId, c.eventTimeMs);
      this.kept++;
      hold(c, key);
      for (const [eventId, t] of this.forgetOld(recent)) forgotten.push({ userid: c.userid, eventId, t });
      this.evictOver();
      return undefined;
    });
    return {
      refused,
      keep: () => {
        // Stored: no other call's failure gives these back now.
        for (const key of held.keys()) this.pending.delete(key);
      },
      release: () => {
        for (const userid of arrived) this.arrivals.giveBack(userid, 1);
        for (const [key, h] of held) {
          const holders = this.pending.get(key);
          // Stored by another call meanwhile, or still held by one.
          if (holders === undefined) continue;
          if (holders > 1) {
            this.pending.set(key, holders - 1);
            continue;
          }
          this.pending.delete(key);
          if (this.users.get(h.userid)?.delete(h.eventId)) this.kept--;
        }
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
