import { readFileSync } from "node:fs";
import { Redis } from "ioredis";

export const WINDOW_MS = 10 * 60_000;
/** Applied event ids are remembered this long after a user's last click (default 7 days). */
export const DEFAULT_DEDUP_RETENTION_MS = 7 * 24 * 3600_000;

export type ApplyOutcome =
  | { status: "applied"; pairs: number }
  | { status: "duplicate" }
  | { status: "late"; watermarkMs: number }
  /** Redis lost the counts (its marker is gone): nothing was applied; a rebuild is needed. */
  | { status: "lost" };

/** Answering from counts Redis lost would look right and be wrong: the caller gets this instead. */
export class CountsLostError extends Error {
  constructor() {
    super("the co-visit counts were lost with Redis' data and are not rebuilt yet (pnpm covisit:rebuild)");
  }
}

export interface CoVisit {
  recommendation: string;
  frequency: number;
}

export interface ClickToApply {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
}

type ScriptedRedis = Redis & {
  applyClick(history: string, seen: string, marker: string, ...args: string[]): Promise<[string, number | string]>;
  topCoVisits(key: string, marker: string, limit: number): Promise<string[] | null>;
};

/** Every key of a namespace starts with this. */
export function keyPrefix(namespace: string): string {
  return `${namespace ? `${namespace}:` : ""}recsys:`;
}

/**
 * Co-visit counts and per-user click history in Redis; every write is one atomic Lua script.
 *
 * Redis may lose everything (a restart without persistence). A marker key, set when the counts
 * start from the first click of the stream, tells: every script refuses to run without it, so no
 * click is ever counted on top of lost counts, and no answer is given from them.
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
  ) {
    this.prefix = keyPrefix(namespace);
    redis.defineCommand("applyClick", { numberOfKeys: 3, lua: readScript("covisit.lua") });
    redis.defineCommand("topCoVisits", { numberOfKeys: 2, lua: readScript("recommend.lua") });
    this.redis = redis as ScriptedRedis;
  }

  private coVisitKeyPrefix(): string {
    return `${this.prefix}cv:`;
  }

  /**
   * Named after the script's storage version: counts kept by an older version (another layout of
   * the history) count as lost, so an upgrade asks for `covisit:rebuild` instead of misreading them.
   */
  private get marker(): string {
    return `${this.prefix}counts-from-first-click:v3`;
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

  async applyClick(click: ClickToApply): Promise<ApplyOutcome> {
    const [status, n] = await this.redis.applyClick(
      `${this.prefix}h:${click.userid}`,
      `${this.prefix}seen:${click.userid}`,
      this.marker,
      click.eventId,
      click.url,
      String(click.eventTimeMs),
      String(WINDOW_MS),
      String(this.allowedLatenessMs),
      this.coVisitKeyPrefix(),
      String(this.dedupRetentionMs),
    );
    this.countsLost = status === "lost";
    if (status === "lost") return { status };
    if (status === "applied") return { status, pairs: Number(n) };
    if (status === "duplicate") return { status };
    if (status === "late") return { status, watermarkMs: Number(n) };
    throw new Error(`covisit.lua returned an unknown status ${status}`);
  }

  /** Pages visited within the window after `url`, frequency desc, then url asc. */
  async coVisitsAfter(url: string, limit: number): Promise<CoVisit[]> {
    const flat = await this.redis.topCoVisits(`${this.coVisitKeyPrefix()}${url}`, this.marker, limit);
    this.countsLost = flat === null;
    if (flat === null) throw new CountsLostError();
    const out: CoVisit[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ recommendation: flat[i]!, frequency: Number(flat[i + 1]) });
    return out;
  }
}

function readScript(name: string): string {
  return readFileSync(new URL(`./${name}`, import.meta.url), "utf8");
}
