import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { consumerProgress, type Bus } from "@recsys/bus";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { checkUrl, checkUserid, decodeCursor, encodeCursor, FieldError, orInvalidArgument, parseRfc3339 } from "@recsys/validation";
import { clicksDurable } from "./durable.js";
import type { AnalyticsReads } from "./reads.js";
import type { AnalyticsStore } from "./store.js";
import type { WindowKey } from "./window-rows.js";

const iso = (ms: number | undefined) => (ms === undefined ? "" : new Date(ms).toISOString());

/** Trending's periods. */
export const TRENDING_PERIODS: ReadonlyMap<string, number> = new Map([
  ["5m", 300_000],
  ["1h", 3_600_000],
  ["24h", 86_400_000],
]);

const MAX_EVENT_CHARS = 64;
/** EventMix sums the panes of its period: a month holds 267,840 of them with the default slide. */
const MAX_EVENT_MIX_MS = 31 * 24 * 3600_000;

function checkEvent(value: string, field = "event"): string {
  if ([...value].length > MAX_EVENT_CHARS) throw new FieldError(field, `must be at most ${MAX_EVENT_CHARS} characters`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is what it is for
  if (/[\s\u0000-\u001f\u007f]/.test(value)) throw new FieldError(field, "must not contain whitespace or control characters");
  return value;
}

function checkLimit(value: number, fallback: number, field = "limit"): number {
  if (value === 0) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > 1000) throw new FieldError(field, "must be between 1 and 1000");
  return value;
}

const optional = <T>(value: string, check: (v: string) => T): T | undefined => (value === "" ? undefined : check(value));
const seconds = (ms: number) => `${ms / 1000} s`;

export function analyticsRoutes(store: AnalyticsStore, reads: AnalyticsReads, bus: Bus) {
  const { sizeMs, slideMs } = reads.windows;
  return (router: ConnectRouter) =>
    router.service(AnalyticsService, {
      async clickMetrics(req) {
        const q = orInvalidArgument(() => {
          const userid = optional(req.userid, (v) => checkUserid(v));
          const url = optional(req.url, (v) => checkUrl(v));
          const event = optional(req.event, (v) => checkEvent(v));
          if (userid === undefined && url === undefined && event === undefined) throw new FieldError("userid", "give a userid, a url or an event");
          const fromMs = optional(req.from, (v) => parseRfc3339(v, "from"));
          const toMs = optional(req.to, (v) => parseRfc3339(v, "to"));
          if (fromMs !== undefined && toMs !== undefined && toMs < fromMs) throw new FieldError("to", "must not be before from");
          let after: WindowKey | undefined;
          if (req.cursor !== "") {
            const [windowStartMs, u, e, url] = decodeCursor("ClickMetrics", req.cursor, ["number", "string", "string", "string"] as const);
            after = { windowStartMs, userid: u, event: e, url };
          }
          return { userid, url, event, fromMs, toMs, limit: checkLimit(req.limit, 100), after };
        });
        const { rows, next } = await reads.clickMetrics(q);
        return {
          nextCursor: next ? encodeCursor("ClickMetrics", [next.windowStartMs, next.userid, next.event, next.url]) : "",
          rows: rows.map((r) => ({
            windowStart: iso(r.windowStartMs),
            windowEnd: iso(r.windowStartMs + sizeMs),
            userid: r.userid,
            event: r.event,
            url: r.url,
            eventCount: BigInt(r.eventCount),
          })),
        };
      },
      async eventMix(req) {
        const { fromMs, toMs } = orInvalidArgument(() => {
          if (req.from === "") throw new FieldError("from", "must not be empty");
          if (req.to === "") throw new FieldError("to", "must not be empty");
          const fromMs = parseRfc3339(req.from, "from");
          const toMs = parseRfc3339(req.to, "to");
          if (fromMs % slideMs !== 0) throw new FieldError("from", `must be a window start: a multiple of the slide (${seconds(slideMs)}) since the epoch`);
          if (toMs <= fromMs || toMs % slideMs !== 0) throw new FieldError("to", `must be a multiple of the slide (${seconds(slideMs)}) after from`);
          if (toMs - fromMs > MAX_EVENT_MIX_MS) throw new FieldError("to", "must be at most 31 days after from");
          return { fromMs, toMs };
        });
        const mix = await reads.eventMix(fromMs, toMs);
        return { events: mix.events.map((e) => ({ event: e.event, clicks: BigInt(e.clicks) })), complete: mix.complete };
      },
      async trending(req) {
        const { periodMs, event, limit } = orInvalidArgument(() => {
          const periodMs = TRENDING_PERIODS.get(req.window);
          if (periodMs === undefined) throw new FieldError("window", `must be one of ${[...TRENDING_PERIODS.keys()].join(", ")}`);
          if (periodMs % slideMs !== 0) throw new FieldError("window", `must be a whole number of slides (${seconds(slideMs)})`);
          return { periodMs, event: optional(req.event, (v) => checkEvent(v)), limit: checkLimit(req.limit, 10) };
        });
        const t = await reads.trending(periodMs, event, limit);
        if (!t) return { urls: [], from: "", to: "" };
        return { urls: t.urls.map((u) => ({ url: u.url, clicks: BigInt(u.clicks) })), from: iso(t.fromMs), to: iso(t.toMs) };
      },
      async progress() {
        const [consumer, p] = await Promise.all([consumerProgress(bus, bus.topology.clicksStream, [clicksDurable]), store.progress()]).catch((err: unknown) => {
          throw new ConnectError(`progress unavailable: ${String(err)}`, Code.Unavailable);
        });
        return {
          ackFloorStreamSequence: consumer.ackFloor,
          pending: consumer.pending,
          ackPending: consumer.ackPending,
          watermark: iso(p.watermarkMs),
          emittedBefore: iso(p.emittedBeforeMs),
          publishedBefore: iso(p.publishedBeforeMs),
          rows: p.emittedRows,
          appliedClicks: p.appliedClicks,
          duplicateClicks: p.duplicateClicks,
          lateClicks: p.lateClicks,
          paneRows: p.paneRows,
          storedPaneRows: p.storedPaneRows,
          keptFrom: iso(p.keptFromMs),
        };
      },
    });
}
