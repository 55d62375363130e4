import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import calculateSlot from "cluster-key-slot";
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
export const STORAGE_VERSION = 4;

/** One Redis, or a Redis Cluster: the store runs the same scripts on either (each touches the keys of one hash slot). */
export type RedisClient = Redis | Cluster;

/**
 * A client for `url`: one Redis (`redis://[user:password@]host:port`), or a Redis Cluster when `cluster` is set (REDIS_CLUSTER) or
 * `url` lists several of its nodes, comma-separated (the seeds: the client learns the rest, and follows slots as they move at a
 * failover).
 */
export function connectRedis(url: string, options: RedisOptions = {}, cluster = false): RedisClient {
  const seeds = url
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (!cluster && seeds.length <= 1) return new Redis(seeds[0] ?? url, options);
  const first = new URL(seeds[0]!);
  const auth = {
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
  };
  return new Cluster(
    seeds.map((s) => {
      const u = new URL(s);
      return { host: u.hostname, port: Number(u.port || 6379) };
    }),
    {
      // Without auto-pipelining: ioredis' per-tick pipelines on a cluster refuse a tick whose keys span nodes (every shard's marker
      // at once, say), where commands one by one go each to its node.
      redisOptions: { ...options, enableAutoPipelining: false, ...auth },
      ...(options.enableOfflineQueue === undefined ? {} : { enableOfflineQueue: options.enableOfflineQueue }),
      ...(options.lazyConnect === undefined ? {} : { lazyConnect: options.lazyConnect }),
      // A failover moves slots to a replica: commands meanwhile wait for the new map instead of failing at once.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      slotsRefreshTimeout: 2_000,
    },
  );
}

/** The servers behind a client: the one Redis, or every node of a cluster it knows, replicas too. */
export function redisNodes(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes("all") : [redis];
}

/**
 * The shard of a user's state and of the counts their clicks add (FNV-1a of the userid's UTF-8 bytes): each click's update
 * touches one shard's keys, all in one hash slot. Recommendation merges a url's counts of every shard.
 */
export function shardOf(userid: string, shards: number): number {
  if (shards === 1) return 0;
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(userid, "utf8")) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h % shards;
}

const SLOTS = 16384;

/**
 * How deep a merge reads each shard first: most urls' counts are shorter in every shard, so one round reads them whole and nothing
 * more is asked; a longer list is read further, four times deeper each round.
 */
const MERGE_FIRST_DEPTH = 32;
/** Members asked for in one ZMSCORE, as recommend.lua asks them. */
const SCORES_PER_CALL = 1_000;

/**
 * The hash tag of shard `s` of `shards`: "s/shards", with a suffix chosen so that its slot falls in the s-th of `shards` equal ranges
 * of the 16,384 slots. A cluster created with its primaries on equal ranges (redis-cli --cluster create) then holds the same number
 * of shards on each primary when `shards` is a multiple of their number.
 */
export function shardTag(s: number, shards: number): string {
  if (shards === 1) return "0/1";
  const lo = Math.floor((s * SLOTS) / shards);
  const hi = Math.floor(((s + 1) * SLOTS) / shards);
  for (let k = 0; ; k++) {
    const tag = k === 0 ? `${s}/${shards}` : `${s}/${shards}.${k}`;
    const slot = calculateSlot(tag);
    if (slot >= lo && slot < hi) return tag;
  }
}

/** How the counts are kept on Redis: see COVISIT_SHARDS and REDIS_WAIT_REPLICAS in services/covisit/README.md. */
export interface StoreLayout {
  /** Shards of the counts and users (1 on one Redis; every reader of the counts must agree). */
  shards?: number;
  /** Replicas that must hold a write before it is acknowledged (WAIT): 0, or 1 on a Redis Cluster with a replica per primary. */
  waitReplicas?: number;
  /** How long a write waits for them before it counts as failed (and its messages come again). */
  waitTimeoutMs?: number;
}

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

type Scripts = {
  /** covisit.lua: the key count, the keys, then the arguments. */
  applyClicks(numberOfKeys: number, ...keysAndArgs: string[]): Promise<Array<string | number>>;
  /** history-urls.lua: the users' histories; from each, the earliest time read. */
  historyUrls(numberOfKeys: number, ...keysAndArgs: string[]): Promise<string[]>;
  /** recommend.lua: the url's counts, the gate, the user's recent urls (or the counts again: none), the pages' visibility; limit, url, seen horizon. */
  topCoVisits(key: string, gate: string, recent: string, visibility: string, limit: number, url: string, horizonMs: number): Promise<string[] | null>;
  /** shard-top.lua: a url's counts in one shard, the shard's gate, its visibility; the first and last rank read. */
  shardTop(counts: string, gate: string, visibility: string, start: number, stop: number): Promise<string[] | null>;
  /** erase.lua: the marker, the user's history, applied ids, recent urls and tombstone; the sequence, the tombstone's life. */
  eraseUser(marker: string, history: string, ids: string, recent: string, tombstone: string, seq: number, keepMs: number): Promise<string>;
  /** visibility.lua: the pages' visibility; url, "1" hidden or "0" shown, the sequence. */
  applyVisibility(visibility: string, url: string, hidden: string, seq: number): Promise<string>;
};
type ScriptedRedis = RedisClient & Scripts;

/** Every key of a namespace starts with this. */
export function keyPrefix(namespace: string): string {
  return `${namespace ? `${namespace}:` : ""}recsys:`;
}

/** UTF-8 bytewise order, as Redis orders members of equal score (and Lua compares strings). */
function bytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * Co-visit counts and per-user click history in Redis; every write is one atomic Lua script on the keys of one shard.
 * Every script refuses without its shard's marker key, so nothing is counted on top of counts Redis lost, nor answered from them.
 *
 * The keys of shard s of S are `<prefix>{<shardTag(s, S)>}:…`: the braces make them one hash slot of a Redis Cluster. A user's state and the
 * counts their clicks add live in the user's shard (shardOf), so that a click's update is one script in one slot, atomic and
 * idempotent; a url's counts are the sum of its counts in every shard, merged exactly at read time (coVisitsAfter).
 */
export class CovisitStore {
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;
  private readonly shards: number;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  /** Each shard's key prefix, "<prefix>{<shardTag>}:". */
  private readonly prefixes: string[];
  /** 0 .. shards - 1. */
  private readonly allShards: number[];
  /** True after a script found a marker gone; false again once every shard's was found. */
  countsLost = false;

  constructor(
    redis: RedisClient,
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
    layout: StoreLayout = {},
  ) {
    this.prefix = keyPrefix(namespace);
    this.shards = layout.shards ?? 1;
    this.waitReplicas = layout.waitReplicas ?? 0;
    this.waitTimeoutMs = layout.waitTimeoutMs ?? 2_000;
    if (!Number.isInteger(this.shards) || this.shards < 1) throw new Error(`shards must be a positive integer, not ${this.shards}`);
    this.allShards = Array.from({ length: this.shards }, (_, s) => s);
    this.prefixes = this.allShards.map((s) => `${this.prefix}{${shardTag(s, this.shards)}}:`);
    redis.defineCommand("applyClicks", { lua: applyClicksScript() });
    redis.defineCommand("historyUrls", { lua: readScript("history-urls.lua") });
    redis.defineCommand("topCoVisits", { numberOfKeys: 4, lua: RECOMMEND.lua });
    redis.defineCommand("shardTop", { numberOfKeys: 3, lua: SHARD_TOP.lua });
    redis.defineCommand("eraseUser", { numberOfKeys: 5, lua: readScript("erase.lua") });
    redis.defineCommand("applyVisibility", { numberOfKeys: 1, lua: readScript("visibility.lua") });
    this.redis = redis as ScriptedRedis;
  }

  /**
   * For a process that answers Recommendation from covisit's Redis without consuming clicks (the gateway): the same script and
   * answers as covisit's, but only while covisit serves from these counts (see markServed), so a reader never answers from
   * counts being rebuilt or before every hidden page is applied. It only reads.
   */
  static reader(redis: RedisClient, namespace: string, seenHorizonMs: number = DEFAULT_SEEN_HORIZON_MS, shards = 1): CovisitStore {
    return new CovisitStore(redis, namespace, 0, DEFAULT_DEDUP_RETENTION_MS, DEFAULT_USER_CLICK_BUDGET, seenHorizonMs, DEFAULT_TOMBSTONE_MS, "once-served", {
      shards,
    });
  }

  /** The prefix of shard `s`'s keys: one hash slot. */
  private shardPrefix(s: number): string {
    return this.prefixes[s]!;
  }

  private countsKey(s: number, url: string): string {
    return `${this.shardPrefix(s)}cv:${url}`;
  }

  /**
   * Named after the script's storage version and the shard: counts kept by an older version (another layout) or with another
   * number of shards count as lost, so such a change asks for `covisit:rebuild` instead of misreading them.
   */
  private marker(s: number): string {
    return `${this.shardPrefix(s)}counts-from-first-click:v${STORAGE_VERSION}`;
  }

  /**
   * Set by covisit once it serves (every page's visibility applied, the counts intact); gone with the rest of the keys when Redis
   * loses its data or `covisit:rebuild` deletes them. A reader (`CovisitStore.reader`) answers only while it is there.
   */
  private servingKey(s: number): string {
    return `${this.shardPrefix(s)}served:v${STORAGE_VERSION}`;
  }

  /** What a read of shard `s` requires: its marker for covisit, its served key for a reader. */
  private gate(s: number): string {
    return this.reads === "once-served" ? this.servingKey(s) : this.marker(s);
  }

  /** A read that found its gate gone: the counts are lost (covisit), or not served yet (a reader). */
  private gateGone(): Error {
    this.countsLost = true;
    return this.reads === "once-served" ? new NotServedYetError() : new CountsLostError();
  }

  /** Declares that covisit serves from these counts: readers in other processes may answer from them too. */
  async markServed(): Promise<void> {
    const at = new Date().toISOString();
    await Promise.all(this.allShards.map((s) => this.redis.set(this.servingKey(s), at)));
  }

  /** Declares the counts complete from the stream's first click: call only when nothing was applied yet. */
  async markFirstClick(): Promise<void> {
    const at = new Date().toISOString();
    await Promise.all(this.allShards.map((s) => this.redis.set(this.marker(s), at, "NX")));
    this.countsLost = false;
  }

  /** Whether the counts are Redis' own since the first click in every shard (false after a data loss). */
  async intact(): Promise<boolean> {
    const found = await Promise.all(this.allShards.map((s) => this.redis.exists(this.marker(s))));
    this.countsLost = found.some((n) => n === 0);
    return !this.countsLost;
  }

  async applyClick(click: SequencedClick): Promise<ApplyOutcome> {
    return (await this.applyClicks([click]))[0]!;
  }

  /**
   * Applies clicks, each with the outcome it would have alone, in this order: one atomic script per shard of their users.
   * When Redis lost a shard's counts, nothing of that shard is applied and its clicks' outcomes are "lost".
   */
  async applyClicks(clicks: SequencedClick[]): Promise<ApplyOutcome[]> {
    if (clicks.length === 0) return [];
    const byShard = new Map<number, number[]>();
    clicks.forEach((c, i) => {
      const s = shardOf(c.userid, this.shards);
      const at = byShard.get(s);
      if (at) at.push(i);
      else byShard.set(s, [i]);
    });
    const outcomes: ApplyOutcome[] = new Array(clicks.length);
    await Promise.all(
      [...byShard].map(async ([s, indexes]) => {
        const applied = await this.applyInShard(
          s,
          indexes.map((i) => clicks[i]!),
        );
        indexes.forEach((i, k) => {
          outcomes[i] = applied[k]!;
        });
      }),
    );
    this.countsLost = outcomes.some((o) => o.status === "lost");
    return outcomes;
  }

  /**
   * covisit.lua on one shard. The co-visit keys a click adds to depend on its user's history, which the script reads: they are read
   * first (history-urls.lua) and declared with the others; the script refuses, changing nothing, should the history have gained a
   * url meanwhile (another replica's batch), naming the keys it lacks, and is run again with them.
   */
  private async applyInShard(s: number, clicks: SequencedClick[]): Promise<ApplyOutcome[]> {
    const histories = new Map<string, number>();
    for (const c of clicks) {
      const h = this.userKeys(s, c.userid)[0];
      histories.set(h, Math.min(histories.get(h) ?? Infinity, c.eventTimeMs - WINDOW_MS));
    }
    const urls = new Set(clicks.map((c) => c.url));
    for (const url of await this.redis.historyUrls(histories.size, ...histories.keys(), ...[...histories.values()].map(String))) urls.add(url);
    const args: string[] = [
      String(WINDOW_MS),
      String(this.allowedLatenessMs),
      this.countsKey(s, ""),
      String(this.dedupRetentionMs),
      String(this.userClickBudget),
      String(this.seenHorizonMs),
      String(clicks.length),
    ];
    const userKeys: string[] = [this.marker(s)];
    for (const c of clicks) {
      userKeys.push(...this.userKeys(s, c.userid));
      args.push(c.eventId, c.url, String(c.eventTimeMs), String(c.streamSeq ?? 0));
    }
    for (let attempt = 1; ; attempt++) {
      const keys = [...userKeys, ...[...urls].map((u) => this.countsKey(s, u))];
      const flat = await this.write(s, keys, args);
      if (flat[0] === "lost") return clicks.map(() => ({ status: "lost" }));
      if (flat[0] === "undeclared") {
        // Each refusal means another script of the same users' shard added to their history meanwhile (covisit has one batch of a
        // partition in flight, so only a redelivery racing its first delivery does): bounded, and a failure is redelivered.
        if (attempt >= 20) throw new Error(`covisit.lua still lacked co-visit keys after ${attempt} attempts`);
        for (const url of flat.slice(1)) urls.add(String(url));
        continue;
      }
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
  }

  /** Runs covisit.lua on shard `s`'s keys, held by REDIS_WAIT_REPLICAS replicas (replicated) unless it found the counts lost. */
  private async write(s: number, keys: string[], args: string[]): Promise<Array<string | number>> {
    if (this.waitReplicas === 0) return this.redis.applyClicks(keys.length, ...keys, ...args);
    return this.replicated<Array<string | number>>(
      s,
      "a co-visit write",
      (p) => p.applyClicks(keys.length, ...keys, ...args),
      (flat) => flat[0] !== "lost" && flat[0] !== "undeclared",
    );
  }

  /**
   * Runs a script of shard `s` then, on the same connection, a write of its own to the shard and WAIT for waitReplicas replicas;
   * fails unless they hold it (when `mustHold` says the script's answer needs them), so that the caller does not acknowledge its
   * message and the redelivery applies it or finds it applied. The write of its own is what makes WAIT cover a redelivery whose
   * script wrote nothing (every click a duplicate, a state already applied): WAIT counts a connection's own writes, and the one
   * that first applied them may have been another's, whose WAIT failed; replicas take a primary's writes in order, so one holding
   * this write holds those before it.
   */
  private async replicated<T>(s: number, what: string, script: (p: Scripts) => unknown, mustHold: (answer: T) => boolean = () => true): Promise<T> {
    const pipeline = this.redis.pipeline() as unknown as Scripts & {
      set(key: string, value: string): unknown;
      wait(n: number, ms: number): unknown;
      exec(): Promise<Array<[Error | null, unknown]>>;
    };
    script(pipeline);
    pipeline.set(`${this.shardPrefix(s)}replicated`, String(Date.now()));
    pipeline.wait(this.waitReplicas, this.waitTimeoutMs);
    const [[scriptErr, answer], [setErr], [waitErr, copies]] = (await pipeline.exec()) as [[Error | null, T], [Error | null], [Error | null, number]];
    if (scriptErr) throw scriptErr;
    if (setErr) throw setErr;
    if (waitErr) throw waitErr;
    if (mustHold(answer) && Number(copies) < this.waitReplicas)
      throw new Error(`${what} reached ${copies} of ${this.waitReplicas} Redis replicas in ${this.waitTimeoutMs} ms (REDIS_WAIT_REPLICAS)`);
    return answer;
  }

  /** A user's keys, as covisit.lua takes them: history, applied ids, recent urls, erasure tombstone. */
  private userKeys(s: number, userid: string): [string, string, string, string] {
    const p = this.shardPrefix(s);
    return [`${p}h:${userid}`, `${p}ids:${userid}`, `${p}r:${userid}`, `${p}erased:${userid}`];
  }

  private recentKey(userid: string): string {
    return this.userKeys(shardOf(userid, this.shards), userid)[2];
  }

  /**
   * url -> the VISIBILITY sequence of its latest state, negated when shown: the hidden pages are those with a positive score. Each
   * shard keeps a copy, so that a shard's read leaves hidden pages out in its own slot.
   */
  private visibilityKey(s: number): string {
    return `${this.shardPrefix(s)}visibility`;
  }

  /**
   * Forgets a user at the UserDeleted of CLICKS sequence `seq`, atomically: their history, applied ids and recent pages go, and a
   * tombstone keeps `seq` (the greater of two) so that no click of a message at or before it counts again. The counts stay.
   */
  async forgetUser(userid: string, seq: number): Promise<EraseOutcome> {
    const s = shardOf(userid, this.shards);
    const [history, ids, recent, tombstone] = this.userKeys(s, userid);
    const erase = (r: Scripts) => r.eraseUser(this.marker(s), history, ids, recent, tombstone, seq, this.tombstoneMs);
    // An erasure is acknowledged (and DeleteUser answered) only once the shard's replicas hold it: lost at a failover, the user's
    // history would stay and their next clicks pair with it.
    const outcome = this.waitReplicas === 0 ? await erase(this.redis) : await this.replicated<string>(s, "an erasure", erase, (o) => o !== "lost");
    this.countsLost = outcome === "lost";
    if (outcome === "erased" || outcome === "duplicate" || outcome === "lost") return outcome;
    throw new Error(`erase.lua returned an unknown outcome ${String(outcome)}`);
  }

  /**
   * Hides or shows `url` as of VISIBILITY sequence `seq` in every shard, unless a state of that sequence or later was applied there.
   * "applied" when any shard applied it: a redelivery after a failure half-way applies the rest.
   */
  async applyVisibility(url: string, hidden: boolean, seq: number): Promise<VisibilityOutcome> {
    const apply = (s: number) => (r: Scripts) => r.applyVisibility(this.visibilityKey(s), url, hidden ? "1" : "0", seq);
    // Acknowledged only once every shard's replicas hold it: lost at a failover, a hidden page would be recommended again.
    const outcomes = await Promise.all(
      this.allShards.map((s) => (this.waitReplicas === 0 ? apply(s)(this.redis) : this.replicated<string>(s, "a page's visibility", apply(s)))),
    );
    for (const outcome of outcomes)
      if (outcome !== "applied" && outcome !== "stale") throw new Error(`visibility.lua returned an unknown outcome ${String(outcome)}`);
    return outcomes.includes("applied") ? "applied" : "stale";
  }

  /** The hidden pages, as Recommendation leaves them out. */
  async hiddenPages(): Promise<string[]> {
    return this.redis.zrangebyscore(this.visibilityKey(0), "(0", "+inf");
  }

  /** The pages coVisitsAfter leaves out for `userid`: clicked within the seen horizon before the user's newest click. */
  async recentPages(userid: string): Promise<string[]> {
    const key = this.recentKey(userid);
    const newest = await this.redis.zrevrange(key, 0, 0, "WITHSCORES");
    if (newest.length === 0) return [];
    return this.redis.zrangebyscore(key, Number(newest[1]) - this.seenHorizonMs, "+inf");
  }

  /** Which of `urls` coVisitsAfter leaves out for `userid` (those of recentPages), asked of Redis for these urls only. */
  async recentAmong(userid: string, urls: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    if (urls.length === 0) return out;
    const key = this.recentKey(userid);
    const newest = await this.redis.zrevrange(key, 0, 0, "WITHSCORES");
    if (newest.length === 0) return out;
    const from = Number(newest[1]) - this.seenHorizonMs;
    const scores = await this.scores(key, [...urls]);
    scores.forEach((score, i) => {
      if (score !== null && Number(score) >= from) out.add(urls[i]!);
    });
    return out;
  }

  /**
   * Pages visited within the window after `url`, frequency desc, then url asc: never `url` itself nor a hidden page, and with
   * `userid`, none of the pages that user clicked within the seen horizon before their newest click; the next ones fill up to `limit`.
   *
   * With one shard, one script (recommend.lua). With several, a url's frequency is the sum over shards, and the top `limit` of the
   * sums is found exactly by the threshold algorithm: each shard's first `depth` by score (shard-top.lua), then the candidates' counts
   * in the shards not read to their end (a shard read to its end has them all); a url not read in any shard sums to at most the
   * shards' scores at that depth, so once the limit-th candidate, past the pages left out and the hidden ones, sums to more than that
   * (or every shard is read to its end) no other url can take its place. Otherwise each shard is read four times deeper.
   */
  async coVisitsAfter(url: string, limit: number, userid = ""): Promise<CoVisit[]> {
    if (this.shards === 1) {
      const counts = this.countsKey(0, url);
      const gate = this.gate(0);
      const recent = userid ? this.recentKey(userid) : counts;
      const flat =
        this.reads === "once-served"
          ? await readOnly(this.redis, RECOMMEND, [counts, gate, recent, this.visibilityKey(0)], [limit, url, this.seenHorizonMs])
          : await this.redis.topCoVisits(counts, gate, recent, this.visibilityKey(0), limit, url, this.seenHorizonMs);
      if (flat === null) throw this.gateGone();
      this.countsLost = false;
      const out: CoVisit[] = [];
      for (let i = 0; i < flat.length; i += 2) out.push({ recommendation: flat[i]!, frequency: Number(flat[i + 1]) });
      return out;
    }
    // The page itself, and with a userid the candidates that user clicked recently, asked for as they come (recentAmong): the
    // user's recent pages may number thousands.
    const leftOut = new Set([url]);
    const askedRecent = new Set<string>();
    // Per shard, every count known so far (read in order, or asked for: absent is 0), how far it was read, and whether to its end.
    const known: Array<Map<string, number>> = this.allShards.map(() => new Map());
    const readTo: number[] = this.allShards.map(() => 0);
    const exhausted: boolean[] = this.allShards.map(() => false);
    const frontier: number[] = this.allShards.map(() => 0);
    const hidden = new Map<string, boolean>();
    // Whether any page is hidden (each shard keeps a copy of the pages' visibility): if not, no candidate is looked up.
    let anyHidden = false;
    for (let depth = Math.max(limit, MERGE_FIRST_DEPTH); ; depth *= 4) {
      const pages = await Promise.all(this.allShards.map((s) => (exhausted[s] ? undefined : this.shardTop(s, url, readTo[s]!, depth))));
      pages.forEach((page, s) => {
        if (!page) return;
        const { flat } = page;
        if (page.anyHidden) anyHidden = true;
        for (let i = 0; i < flat.length; i += 2) known[s]!.set(flat[i]!, Number(flat[i + 1]));
        exhausted[s] = flat.length < 2 * (depth - readTo[s]!);
        if (flat.length > 0) frontier[s] = Number(flat[flat.length - 1]);
        readTo[s] = depth;
      });
      const read = [...new Set(known.flatMap((m) => [...m.keys()]))];
      if (userid) {
        const unasked = read.filter((m) => !askedRecent.has(m));
        for (const m of unasked) askedRecent.add(m);
        for (const m of await this.recentAmong(userid, unasked)) leftOut.add(m);
      }
      const candidates = read.filter((m) => !leftOut.has(m));
      // A candidate's count in a shard read to its end is known (absent: 0); in the others it is asked for, once; so is its visibility.
      const asks = this.allShards
        .filter((s) => !exhausted[s])
        .map((s) => ({ s, missing: candidates.filter((m) => !known[s]!.has(m)) }))
        .filter((a) => a.missing.length > 0);
      const unknownVisibility = anyHidden ? candidates.filter((m) => !hidden.has(m)) : [];
      const [visibility, ...answers] = await Promise.all([
        this.scores(this.visibilityKey(0), unknownVisibility),
        ...asks.map((a) => this.scores(this.countsKey(a.s, url), a.missing)),
      ]);
      unknownVisibility.forEach((m, k) => hidden.set(m, visibility[k] !== null && Number(visibility[k]) > 0));
      asks.forEach((a, i) => a.missing.forEach((m, k) => known[a.s]!.set(m, answers[i]![k] === null ? 0 : Number(answers[i]![k]))));
      const ranked = candidates
        .filter((m) => !hidden.get(m))
        .map((m) => ({ recommendation: m, frequency: known.reduce((sum, shard) => sum + (shard.get(m) ?? 0), 0) }));
      ranked.sort((x, y) => y.frequency - x.frequency || bytewise(x.recommendation, y.recommendation));
      const top = ranked.slice(0, limit);
      const threshold = frontier.reduce((sum, f, s) => sum + (exhausted[s] ? 0 : f), 0);
      // A url not read in any shard sums to at most the threshold: once the limit-th sums to more, none can take its place.
      if (exhausted.every(Boolean) || (top.length === limit && top[limit - 1]!.frequency > threshold)) {
        this.countsLost = false;
        return top;
      }
    }
  }

  /**
   * ZMSCORE of `members` on `key`, SCORES_PER_CALL at a time: below the top of a url's counts the candidates can number hundreds
   * of thousands, past the arguments one JavaScript call can take (about 120,000).
   */
  private async scores(key: string, members: string[]): Promise<Array<string | null>> {
    const parts: Array<Promise<Array<string | null>>> = [];
    for (let i = 0; i < members.length; i += SCORES_PER_CALL) parts.push(this.redis.zmscore(key, members.slice(i, i + SCORES_PER_CALL)));
    return (await Promise.all(parts)).flat();
  }

  /** shard-top.lua on shard `s`: its co-visits of `url` ranked `from` to `to` (exclusive) by score; refused when its gate is gone. */
  private async shardTop(s: number, url: string, from: number, to: number): Promise<{ anyHidden: boolean; flat: string[] }> {
    const keys = [this.countsKey(s, url), this.gate(s), this.visibilityKey(s)] as const;
    const answer =
      this.reads === "once-served" ? await readOnly(this.redis, SHARD_TOP, [...keys], [from, to - 1]) : await this.redis.shardTop(...keys, from, to - 1);
    if (answer === null) throw this.gateGone();
    const [anyHidden, ...flat] = answer;
    return { anyHidden: Number(anyHidden) > 0, flat };
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

/** A script and its SHA-1, for readers (EVALSHA_RO). */
function readOnlyScript(name: string): { lua: string; sha: string } {
  const lua = readScript(name);
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}
const RECOMMEND = readOnlyScript("recommend.lua");
const SHARD_TOP = readOnlyScript("shard-top.lua");

/**
 * A script that only reads, run as such (EVALSHA_RO, or EVAL_RO the first time a server meets it): a user with read-only access
 * to the keys may run it, and a replica may answer it.
 */
async function readOnly(redis: RedisClient, script: { lua: string; sha: string }, keys: string[], args: Array<string | number>): Promise<string[] | null> {
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

/**
 * Deletes every key that `pattern` (SCAN's MATCH) matches, and returns how many were deleted. On a Redis Cluster it scans every node
 * the client knows, replicas too: right after a failover the client's map may still call the old primary one and the new one a
 * replica, and either lists the keys. Each key's UNLINK goes through the cluster client, which sends it to the primary of the key's
 * slot and follows a MOVED; a key listed by two nodes is deleted once.
 */
export async function deleteMatching(redis: RedisClient, pattern: string): Promise<number> {
  let deleted = 0;
  // Node by node by address: a cluster client that reads the slots anew meanwhile (after a MOVED) replaces its connection to a
  // node whose role changed and closes the old one. A SCAN cursor is the server's, so the scan goes on over the new connection.
  const addressOf = (node: Redis) => `${node.options.host}:${node.options.port}`;
  for (const address of redisNodes(redis).map(addressOf)) {
    let cursor = "0";
    do {
      const node = redisNodes(redis).find((n) => addressOf(n) === address);
      // Gone from the client's map: the cluster no longer counts it, and the node that took its slots is scanned too.
      if (!node) break;
      const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length === 0) continue;
      if (redis instanceof Cluster) for (const n of await Promise.all(keys.map((key) => redis.unlink(key)))) deleted += n;
      else deleted += await node.unlink(...keys);
    } while (cursor !== "0");
  }
  return deleted;
}
