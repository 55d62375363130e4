import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { serviceTransport } from "./transport.js";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { ClickInputSchema, IngestService, type ClickInput } from "@recsys/contracts/ingest/v1/ingest";
import { latestEventTime, readClickFile, shiftTime, type FileClick } from "./click-file.js";
import { itemResults, sendPaced, waitFor, type LoadOptions } from "./sender.js";

export interface ReplayOptions extends LoadOptions {
  covisit: string;
  shiftTime: boolean;
  /** The url of an AWS-format click, from its product_id (see fileClickOf). */
  productUrl?: string;
}

export interface ReplaySummary {
  sent: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  /** Clicks dead-lettered as too late while this replay ran; null without --wait. */
  late: number | null;
  retries: number;
  elapsedMs: number;
  clicksPerSecond: number;
  ackLatencyP50Ms: number;
  ackLatencyP99Ms: number;
  lastStreamSequence: string;
  rejections: Array<{ line: number; field: string; reason: string }>;
}

export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  const ingest = createClient(IngestService, serviceTransport(opts.target));
  const covisit = createClient(CovisitService, serviceTransport(opts.covisit));
  const lateBefore = opts.wait ? (await covisit.progress({})).deadLetteredClicks : 0n;
  const started = performance.now();

  const latest = opts.shiftTime ? await latestEventTime(opts.file) : undefined;
  const shift: ((c: FileClick) => FileClick) | undefined = latest === undefined ? undefined : shiftTime(latest, Date.now());

  async function* clicks(): AsyncGenerator<ClickInput> {
    for await (const raw of readClickFile(opts.file, opts.productUrl)) {
      const c = shift ? shift(raw) : raw;
      yield create(ClickInputSchema, {
        userid: c.userid,
        url: c.url,
        eventTime: c.event_time,
        eventId: c.event_id ?? "",
        event: c.event ?? "",
        properties: Object.fromEntries(
          Object.entries(c.properties ?? {}).map(([name, v]) => [
            name,
            { kind: typeof v === "number" ? { case: "number" as const, value: v } : { case: "text" as const, value: v } },
          ]),
        ),
      });
    }
  }

  const sent = await sendPaced({
    items: clicks(),
    rate: opts.rate,
    batchSize: opts.batchSize,
    concurrency: opts.concurrency,
    keyOf: (c) => c.userid,
    onProgress: opts.onProgress,
    send: async (batch) => itemResults((await ingest.publishClicks({ clicks: batch }, { timeoutMs: 30_000 })).results),
  });

  let late: number | null = null;
  if (opts.wait) {
    // Every click up to the last sequence applied and acked by covisit: visible in Recommendation.
    let floor = 0n;
    await waitFor(
      async () => (floor = (await covisit.progress({})).ackFloorStreamSequence) >= sent.lastStreamSequence,
      opts.waitTimeoutMs,
      async () => `covisit has applied up to stream sequence ${floor}, not ${sent.lastStreamSequence},`,
    );
    late = Number((await covisit.progress({})).deadLetteredClicks - lateBefore);
  }
  const elapsedMs = performance.now() - started;
  return {
    sent: sent.sent,
    accepted: sent.accepted,
    rejected: sent.rejected,
    duplicates: sent.duplicates,
    late,
    retries: sent.retries,
    elapsedMs,
    clicksPerSecond: sent.sent / Math.max(elapsedMs / 1000, 0.001),
    ackLatencyP50Ms: sent.ackLatencyP50Ms,
    ackLatencyP99Ms: sent.ackLatencyP99Ms,
    lastStreamSequence: sent.lastStreamSequence.toString(),
    rejections: sent.rejections,
  };
}

export function formatSummary(s: ReplaySummary): string {
  return [
    `sent=${s.sent}`,
    `accepted=${s.accepted}`,
    `rejected=${s.rejected}`,
    `duplicates=${s.duplicates}`,
    `late=${s.late ?? "n/a"}`,
    `retries=${s.retries}`,
    `elapsed=${(s.elapsedMs / 1000).toFixed(2)}s`,
    `clicks/s=${Math.round(s.clicksPerSecond)}`,
    `ack_p50=${s.ackLatencyP50Ms.toFixed(1)}ms`,
    `ack_p99=${s.ackLatencyP99Ms.toFixed(1)}ms`,
  ].join(" ");
}
