import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import { Code, ConnectError } from "@connectrpc/connect";
import { checkLimit, checkUrl, checkUserid, COVISIT_WINDOW_MS, DEFAULT_USER_CLICK_BUDGET, orInvalidArgument } from "@recsys/validation";
import type { ClickToApply } from "@recsys/bus";

/** The store takes clicks as the bus reads them. */
export type { ClickToApply };

/**
 * A click with the CLICKS sequence of its message: a click of a message at or before its user's erasure is skipped. Without one
 * (a caller that does not read CLICKS, such as the benchmarks) it counts as older than any erasure.
 */
export type SequencedClick = ClickToApply & { streamSeq?: number };

/** The co-visit window (shared with the reference SQL); a user's click budget counts clicks within the same window. */
export const WINDOW_MS = COVISIT_WINDOW_MS;
/**
 * Clicks in one script by default. Redis runs nothing else while a script runs (128 clicks: about 5 ms), and a batch
 * shares the fixed cost of a script and of a user's reads and writes: about half the CPU a click of one-click scripts.
 */
export const DEFAULT_MAX_BATCH = 128;
/**
 * Applied event ids are remembered this long in event time before a user's latest click, and a
 * user's keys expire this long after its last applied click (default 7 days).
 */
export const DEFAULT_DEDUP_RETENTION_MS = 7 * 24 * 3600_000;
/** Recommendation with a userid leaves out the pages the user clicked this long before their newest click. */
export const DEFAULT_SEEN_HORIZON_MS = 24 * 3600_000;
/**
 * How long an erasure's tombstone is kept (default 7 days, CLICKS_MAX_AGE_MS): every message it guards against is at or before the
 * erasure's in CLICKS, so stored no later, and the stream deletes it CLICKS_MAX_AGE_MS after; none can be delivered again after that.
 */
export const DEFAULT_TOMBSTONE_MS = 7 * 24 * 3600_000;
/**
 * The layout of the history and applied ids that covisit.lua keeps: the marker is named after it,
 * covisit.lua's header states it, and the README tells it. Change all three with this number.
 */
export const STORAGE_VERSION = 3;

export type ApplyOutcome =
  | { status: "applied"; pairs: number }
  | { status: "duplicate" }
  | { status: "late"; watermarkMs: number }
  /** The user already has `budget` clicks within a window of this one: refused, nothing changed. */
  | { status: "budget"; near: number }
  /** Redis lost the counts (its marker is gone): nothing was applied; a rebuild is needed. */
  | { status: "lost" }
  /** Its message is at or before its user's erasure (a redelivery of the erased user's click): nothing changed. */
  | { status: "erased" };

/**
 * What an erasure did: "erased" forgot the user; "duplicate" found an erasure at this sequence or later already applied and changed
 * nothing; "lost" changed nothing because Redis lost the counts (a rebuild applies it at its place).
 */
export type EraseOutcome = "erased" | "duplicate" | "lost";

/** What a page's visibility did: "stale" when a state of that sequence or later was applied, which it leaves as it is. */
export type VisibilityOutcome = "applied" | "stale";

/** Answering from counts Redis lost would look right and be wrong: the caller gets this instead. */
export class CountsLostError extends Error {
  constructor() {
    super("the co-visit counts were lost with Redis' data and are not rebuilt yet (pnpm covisit:rebuild)");
  }
}

/** A reader's answer while covisit has not served from these counts yet: they are being rebuilt, or covisit is starting. */
export class NotServedYetError extends Error {
  constructor() {
    super("covisit does not serve from the co-visit counts: it is starting, or they were lost or are being rebuilt (pnpm covisit:rebuild)");
  }
}

export interface CoVisit {
  recommendation: string;
  frequency: number;
}

type ScriptedRedis = Redis & {
  /** covisit.lua: the key count, the keys, then the arguments. */
  applyClicks(numberOfKeys: number, ...keysAndArgs: string[]): Promise<Array<string | number>>;
  /** recommend.lua: the url's counts, the marker, the user's recent urls (or the counts again: none), the pages' visibility; limit, url, seen horizon. */
  topCoVisits(key: string, marker: string, recent: string, visibility: string, limit: number, url: string, horizonMs: number): Promise<string[] | null>;
  /** erase.lua: the marker, the user's history, applied ids, version 4's ids, recent urls and tombstone; the sequence, the tombstone's life. */
  eraseUser(marker: string, history: string, ids: string, legacy: string, recent: string, tombstone: string, seq: number, keepMs: number): Promise<string>;
  /** visibility.lua: the pages' visibility; url, "1" hidden or "0" shown, the sequence. */
  applyVisibility(visibility: string, url: string, hidden: string, seq: number): Promise<string>;
};

/** Every key of a namespace starts with this. */
export function keyPrefix(namespace: string): string {
  return `${namespace ? `${namespace}:` : ""}recsys:`;
}

/**
 * Co-visit counts and per-user click history in Redis; every write is one atomic Lua script.
 * Every script refuses without the marker key, so nothing is counted on top of counts Redis lost, nor answered from them.
 */
export class CovisitStore {
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;
  /** True after a script found the marker gone; false again once one found it. */
  countsLost = false;

  constructor(
    redis: Redis,
    namespace: string,
    private readonly allowedLatenessMs: number,
    private readonly dedupRetentionMs: number = DEFAULT_DEDUP_RETENTION_MS,
    /** The most clicks of one user within a window of each other (see USER_CLICK_BUDGET). */
    private readonly userClickBudget: number = DEFAULT_USER_CLICK_BUDGET,
    /** How far back from a user's newest click Recommendation leaves their pages out (see SEEN_HORIZON_MS). */
    private readonly seenHorizonMs: number = DEFAULT_SEEN_HORIZON_MS,
    /** How long an erasure's tombstone is kept (CLICKS_MAX_AGE_MS: see DEFAULT_TOMBSTONE_MS). */
    private readonly tombstoneMs: number = DEFAULT_TOMBSTONE_MS,
    /** "counts": answer while the counts are intact (covisit itself); "once-served": only while covisit serves (see reader). */
    private readonly reads: "counts" | "once-served" = "counts",
  ) {
    this.prefix = keyPrefix(namespace);
    redis.defineCommand("applyClicks", { lua: applyClicksScript() });
    redis.defineCommand("topCoVisits", { numberOfKeys: 4, lua: RECOMMEND.lua });
    redis.defineCommand("eraseUser", { numberOfKeys: 6, lua: readScript("erase.lua") });
    redis.defineCommand("applyVisibility", { numberOfKeys: 1, lua: readScript("visibility.lua") });
    this.redis = redis as ScriptedRedis;
  }

  /**
   * For a process that answers Recommendation from covisit's Redis without consuming clicks (the gateway): the same script and
   * answers as covisit's, but only while covisit serves from these counts (see markServed), so a reader never answers from
   * counts being rebuilt or before every hidden page is applied. It only reads.
   */
  static reader(redis: Redis, namespace: string, seenHorizonMs: number = DEFAULT_SEEN_HORIZON_MS): CovisitStore {
    return new CovisitStore(redis, namespace, 0, DEFAULT_DEDUP_RETENTION_MS, DEFAULT_USER_CLICK_BUDGET, seenHorizonMs, DEFAULT_TOMBSTONE_MS, "once-served");
  }

  private coVisitKeyPrefix(): string {
    return `${this.prefix}cv:`;
  }

  /**
   * Named after the script's storage version: counts kept by an older version (another layout of
   * the history) count as lost, so an upgrade asks for `covisit:rebuild` instead of misreading them.
   */
  private get marker(): string {
    return `${this.prefix}counts-from-first-click:v${STORAGE_VERSION}`;
  }

  /**
   * Set by covisit once it serves (every page's visibility applied, the counts intact); gone with the rest of the keys when Redis
   * loses its data or `covisit:rebuild` deletes them. A reader (`CovisitStore.reader`) answers only while it is there.
   */
  private get servingKey(): string {
    return `${this.prefix}served:v${STORAGE_VERSION}`;
  }

  /** Declares that covisit serves from these counts: readers in other processes may answer from them too. */
  async markServed(): Promise<void> {
    await this.redis.set(this.servingKey, new Date().toISOString());
  }

  /** Declares the counts complete from the stream's first click: call only when nothing was applied yet. */
  async markFirstClick(): Promise<void> {
    await this.redis.set(this.marker, new Date().toISOString(), "NX");
    this.countsLost = false;
  }

  /** Whether the counts are Redis' own since the first click (false after a data loss). */
  async intact(): Promise<boolean> {
    this.countsLost = (await this.redis.exists(this.marker)) === 0;
    return !this.countsLost;
  }

  async applyClick(click: SequencedClick): Promise<ApplyOutcome> {
    return (await this.applyClicks([click]))[0]!;
  }

  /**
   * Applies clicks in one atomic script, each with the outcome it would have alone, in this order.
   * When Redis lost the counts, nothing is applied and every outcome is "lost".
   */
  async applyClicks(clicks: SequencedClick[]): Promise<ApplyOutcome[]> {
    if (clicks.length === 0) return [];
    const keys: string[] = [this.marker];
    const args: string[] = [
      String(WINDOW_MS),
      String(this.allowedLatenessMs),
      this.coVisitKeyPrefix(),
      String(this.dedupRetentionMs),
      String(this.userClickBudget),
      String(this.seenHorizonMs),
    ];
    for (const c of clicks) {
      keys.push(...this.userKeys(c.userid));
      args.push(c.eventId, c.url, String(c.eventTimeMs), String(c.streamSeq ?? 0));
    }
    const flat = await this.redis.applyClicks(keys.length, ...keys, ...args);
    this.countsLost = flat[0] === "lost";
    if (this.countsLost) return clicks.map(() => ({ status: "lost" }));
    if (flat.length !== 2 * clicks.length) throw new Error(`covisit.lua answered ${flat.length} values for ${clicks.length} clicks`);
    return clicks.map((_, i) => {
      const status = flat[2 * i];
      const n = Number(flat[2 * i + 1]);
      if (status === "applied") return { status, pairs: n };
      if (status === "duplicate") return { status };
      if (status === "late") return { status, watermarkMs: n };
      if (status === "budget") return { status, near: n };
      if (status === "erased") return { status };
      throw new Error(`covisit.lua returned an unknown status ${String(status)}`);
    });
  }

  /** A user's keys, as covisit.lua takes them: history, applied ids, version 4's applied ids, recent urls, erasure tombstone. */
  private userKeys(userid: string): [string, string, string, string, string] {
    // The applied ids of version 4 were a set under seen:, read until it expires.
    return [
      `${this.prefix}h:${userid}`,
      `${this.prefix}ids:${userid}`,
      `${this.prefix}seen:${userid}`,
      this.recentKey(userid),
      `${this.prefix}erased:${userid}`,
    ];
  }

  private recentKey(userid: string): string {
    return `${this.prefix}r:${userid}`;
  }

  /** url -> the VISIBILITY sequence of its latest state, negated when shown: the hidden pages are those with a positive score. */
  private get visibilityKey(): string {
    return `${this.prefix}visibility`;
  }

  /**
   * Forgets a user at the UserDeleted of CLICKS sequence `seq`, atomically: their history, applied ids and recent pages go, and a
   * tombstone keeps `seq` (the greater of two) so that no click of a message at or before it counts again. The counts stay.
   */
  async forgetUser(userid: string, seq: number): Promise<EraseOutcome> {
    const [history, ids, legacy, recent, tombstone] = this.userKeys(userid);
    const outcome = await this.redis.eraseUser(this.marker, history, ids, legacy, recent, tombstone, seq, this.tombstoneMs);
    this.countsLost = outcome === "lost";
    if (outcome === "erased" || outcome === "duplicate" || outcome === "lost") return outcome;
    throw new Error(`erase.lua returned an unknown outcome ${String(outcome)}`);
  }

  /** Hides or shows `url` as of VISIBILITY sequence `seq`, unless a state of that sequence or later was applied. */
  async applyVisibility(url: string, hidden: boolean, seq: number): Promise<VisibilityOutcome> {
    const outcome = await this.redis.applyVisibility(this.visibilityKey, url, hidden ? "1" : "0", seq);
    if (outcome === "applied" || outcome === "stale") return outcome;
    throw new Error(`visibility.lua returned an unknown outcome ${String(outcome)}`);
  }

  /** The hidden pages, as Recommendation leaves them out. */
  async hiddenPages(): Promise<string[]> {
    return this.redis.zrangebyscore(this.visibilityKey, "(0", "+inf");
  }

  /** The pages coVisitsAfter leaves out for `userid`: clicked within the seen horizon before the user's newest click. */
  async recentPages(userid: string): Promise<string[]> {
    const key = this.recentKey(userid);
    const newest = await this.redis.zrevrange(key, 0, 0, "WITHSCORES");
    if (newest.length === 0) return [];
    return this.redis.zrangebyscore(key, Number(newest[1]) - this.seenHorizonMs, "+inf");
  }

  /**
   * Pages visited within the window after `url`, frequency desc, then url asc: never `url` itself nor a hidden page, and with
   * `userid`, none of the pages that user clicked within the seen horizon before their newest click; the next ones fill up to `limit`.
   */
  async coVisitsAfter(url: string, limit: number, userid = ""): Promise<CoVisit[]> {
    const counts = `${this.coVisitKeyPrefix()}${url}`;
    const recent = userid ? this.recentKey(userid) : counts;
    const gate = this.reads === "once-served" ? this.servingKey : this.marker;
    const flat =
      this.reads === "once-served"
        ? await readOnly(this.redis, RECOMMEND, [counts, gate, recent, this.visibilityKey], [limit, url, this.seenHorizonMs])
        : await this.redis.topCoVisits(counts, gate, recent, this.visibilityKey, limit, url, this.seenHorizonMs);
    this.countsLost = flat === null;
    if (flat === null) throw this.reads === "once-served" ? new NotServedYetError() : new CountsLostError();
    const out: CoVisit[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ recommendation: flat[i]!, frequency: Number(flat[i + 1]) });
    return out;
  }
}

/** covisit.lua, refused unless its header states STORAGE_VERSION: a script of another layout would misread the history. */
export function applyClicksScript(): string {
  const lua = readScript("covisit.lua");
  const stated = storageVersionStated(lua.split("\n", 1)[0]!);
  if (stated !== STORAGE_VERSION)
    throw new Error(`covisit.lua's header states storage version ${stated ?? "none"}; this covisit keeps version ${STORAGE_VERSION}`);
  return lua;
}

/** The storage version a text states as "storage version N", if any. */
export function storageVersionStated(text: string): number | undefined {
  const m = /storage version (\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** recommend.lua and its SHA-1, for readers (EVALSHA_RO). */
const RECOMMEND = (() => {
  const lua = readScript("recommend.lua");
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
})();

/**
 * A script that only reads, run as such (EVALSHA_RO, or EVAL_RO the first time a server meets it): a user with read-only access
 * to the keys may run it, and a replica may answer it.
 */
async function readOnly(redis: Redis, script: { lua: string; sha: string }, keys: string[], args: Array<string | number>): Promise<string[] | null> {
  try {
    return (await redis.call("EVALSHA_RO", script.sha, keys.length, ...keys, ...args)) as string[] | null;
  } catch (err) {
    if (!String(err).includes("NOSCRIPT")) throw err;
    return (await redis.call("EVAL_RO", script.lua, keys.length, ...keys, ...args)) as string[] | null;
  }
}

function readScript(name: string): string {
  return readFileSync(new URL(`./${name}`, import.meta.url), "utf8");
}

/**
 * Recommendation as covisit answers it, for covisit's RPC and for readers alike: the url, limit and userid checked (InvalidArgument
 * naming the field), then the store's answer; counts lost or not served yet are Unavailable.
 */
export async function answerRecommendation(
  store: CovisitStore,
  req: { url: string; limit: number; userid: string },
): Promise<{ items: Array<{ recommendation: string; frequency: bigint }> }> {
  const url = orInvalidArgument(() => checkUrl(req.url));
  const limit = orInvalidArgument(() => checkLimit(req.limit === 0 ? undefined : req.limit));
  const userid = req.userid === "" ? "" : orInvalidArgument(() => checkUserid(req.userid));
  const items = await store.coVisitsAfter(url, limit, userid).catch((err: unknown) => {
    throw err instanceof CountsLostError || err instanceof NotServedYetError ? new ConnectError(err.message, Code.Unavailable) : err;
  });
  return { items: items.map((c) => ({ recommendation: c.recommendation, frequency: BigInt(c.frequency) })) };
}
