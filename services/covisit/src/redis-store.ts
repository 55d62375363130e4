import { readFileSync } from "node:fs";
import { Redis } from "ioredis";

export const WINDOW_MS = 10 * 60_000;
/** Applied event ids are remembered this long after a user's last click (default 7 days). */
export const DEFAULT_DEDUP_RETENTION_MS = 7 * 24 * 3600_000;

export type ApplyOutcome =
  | { status: "applied"; pairs: number }
  | { status: "duplicate" }
  | { status: "late"; watermarkMs: number };

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
  applyClick(history: string, urls: string, seen: string, ...args: string[]): Promise<[string, number | string]>;
  topCoVisits(key: string, limit: number): Promise<string[]>;
};

/** Every key of a namespace starts with this. */
export function keyPrefix(namespace: string): string {
  return `${namespace ? `${namespace}:` : ""}recsys:`;
}

/** Co-visit counts and per-user click history in Redis; every write is one atomic Lua script. */
export class CovisitStore {
  private readonly redis: ScriptedRedis;
  private readonly prefix: string;

  constructor(
    redis: Redis,
    namespace: string,
    private readonly allowedLatenessMs: number,
    private readonly dedupRetentionMs: number = DEFAULT_DEDUP_RETENTION_MS,
  ) {
    this.prefix = keyPrefix(namespace);
    redis.defineCommand("applyClick", { numberOfKeys: 3, lua: readScript("covisit.lua") });
    redis.defineCommand("topCoVisits", { numberOfKeys: 1, lua: readScript("recommend.lua") });
    this.redis = redis as ScriptedRedis;
  }

  private coVisitKeyPrefix(): string {
    return `${this.prefix}cv:`;
  }

  async applyClick(click: ClickToApply): Promise<ApplyOutcome> {
    const [status, n] = await this.redis.applyClick(
      `${this.prefix}h:${click.userid}`,
      `${this.prefix}hu:${click.userid}`,
      `${this.prefix}seen:${click.userid}`,
      click.eventId,
      click.url,
      String(click.eventTimeMs),
      String(WINDOW_MS),
      String(this.allowedLatenessMs),
      this.coVisitKeyPrefix(),
      String(this.dedupRetentionMs),
    );
    if (status === "applied") return { status, pairs: Number(n) };
    if (status === "duplicate") return { status };
    if (status === "late") return { status, watermarkMs: Number(n) };
    throw new Error(`covisit.lua returned an unknown status ${status}`);
  }

  /** Pages visited within the window after `url`, frequency desc, then url asc. */
  async coVisitsAfter(url: string, limit: number): Promise<CoVisit[]> {
    const flat = await this.redis.topCoVisits(`${this.coVisitKeyPrefix()}${url}`, limit);
    const out: CoVisit[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ recommendation: flat[i]!, frequency: Number(flat[i + 1]) });
    return out;
  }
}

function readScript(name: string): string {
  return readFileSync(new URL(`./${name}`, import.meta.url), "utf8");
}
