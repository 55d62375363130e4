import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { serviceTransport } from "./transport.js";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import { ContentInputSchema, IngestService, type ContentInput } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { readJsonLines } from "./click-file.js";
import { itemResults, sendPaced, waitFor, type LoadOptions } from "./sender.js";

export interface ContentLoadOptions extends LoadOptions {
  embedder: string;
  profile: string;
}

export interface ContentLoadSummary {
  sent: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  retries: number;
  elapsedMs: number;
  pagesPerSecond: number;
  ackLatencyP50Ms: number;
  ackLatencyP99Ms: number;
  /** With --wait: pages stored by profile at the end. */
  pagesStored: number | null;
  rejections: Array<{ line: number; field: string; reason: string }>;
}

/** A page of the content file: {id, url, title, text, _source_time}. */
export function toContentInput(o: Record<string, unknown>): ContentInput {
  const str = (v: unknown) => (v === undefined || v === null ? "" : String(v));
  return create(ContentInputSchema, {
    url: str(o.url),
    id: str(o.id),
    title: str(o.title),
    text: str(o.text),
    sourceTime: str(o._source_time ?? o.source_time),
  });
}

export async function loadContent(opts: ContentLoadOptions): Promise<ContentLoadSummary> {
  const ingest = createClient(IngestService, serviceTransport(opts.target));
  const started = performance.now();

  async function* pages(): AsyncGenerator<ContentInput> {
    for await (const o of readJsonLines(opts.file)) yield toContentInput(o);
  }

  const sent = await sendPaced({
    items: pages(),
    rate: opts.rate,
    batchSize: opts.batchSize,
    concurrency: opts.concurrency,
    keyOf: (p) => p.url,
    onProgress: opts.onProgress,
    send: async (batch) => itemResults((await ingest.publishContent({ pages: batch }, { timeoutMs: 30_000 })).results),
  });

  let pagesStored: number | null = null;
  if (opts.wait) {
    const embedder = createClient(EmbedderService, serviceTransport(opts.embedder));
    const profile = createClient(ProfileService, serviceTransport(opts.profile));
    // First every page embedded (or found stale) by the embedder, then every embedding stored by profile.
    let floor = 0n;
    await waitFor(
      async () => (floor = (await embedder.progress({})).contentAckFloor) >= sent.lastStreamSequence,
      opts.waitTimeoutMs,
      async () => `the embedder has handled CONTENT up to sequence ${floor}, not ${sent.lastStreamSequence},`,
    );
    const embeddings = (await embedder.progress({})).embeddingsLastSequence;
    let stored = 0n;
    await waitFor(
      async () => (stored = (await profile.progress({})).embeddingsAckFloor) >= embeddings,
      opts.waitTimeoutMs,
      async () => `profile has stored EMBEDDINGS up to sequence ${stored}, not ${embeddings},`,
    );
    pagesStored = Number((await profile.progress({})).pages);
  }
  const elapsedMs = performance.now() - started;
  return {
    sent: sent.sent,
    accepted: sent.accepted,
    rejected: sent.rejected,
    duplicates: sent.duplicates,
    retries: sent.retries,
    elapsedMs,
    pagesPerSecond: sent.sent / Math.max(elapsedMs / 1000, 0.001),
    ackLatencyP50Ms: sent.ackLatencyP50Ms,
    ackLatencyP99Ms: sent.ackLatencyP99Ms,
    pagesStored,
    rejections: sent.rejections,
  };
}

export function formatContentSummary(s: ContentLoadSummary): string {
  return [
    `sent=${s.sent}`,
    `accepted=${s.accepted}`,
    `rejected=${s.rejected}`,
    `duplicates=${s.duplicates}`,
    `retries=${s.retries}`,
    `stored=${s.pagesStored ?? "n/a"}`,
    `elapsed=${(s.elapsedMs / 1000).toFixed(2)}s`,
    `pages/s=${Math.round(s.pagesPerSecond)}`,
    `ack_p50=${s.ackLatencyP50Ms.toFixed(1)}ms`,
    `ack_p99=${s.ackLatencyP99Ms.toFixed(1)}ms`,
  ].join(" ");
}
