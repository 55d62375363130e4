import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { replay } from "@recsys/loadgen/replay";
import { node } from "./in-process-embedding.js";
import type { Click } from "./reference-data.js";
import { url } from "./stack.js";

const here = dirname(fileURLToPath(import.meta.url));

// The measured phases, each against the running stack: throughput to visible, freshness, request
// latency under an open loop, and embedding throughput.

/**
 * The reference clicks as this run's own traffic: user ids prefixed with the run, so that a run
 * never meets the users (and their newest click times) of an earlier one.
 */
export function runFile(clicks: Click[], run: string, count = clicks.length): string {
  const file = join(mkdtempSync(join(tmpdir(), "recsys-bench-")), "clicks.json");
  writeFileSync(
    file,
    clicks
      .slice(0, count)
      .map((c) => JSON.stringify({ ...c, userid: `${run}-${c.userid}` }))
      .join("\n"),
  );
  return file;
}

/** Reference clicks through ingest as fast as taken (new times, so new ids), until visible in Recommendation. */
export async function ingestToVisible(file: string) {
  // 8 calls in flight: with 4, ingest and the broker sat waiting between calls (7,810-9,697 clicks/s
  // against 11,213-11,581 with 8, in alternating replays).
  const s = await replay({
    file,
    rate: 0,
    target: url.ingest,
    covisit: url.covisit,
    wait: true,
    shiftTime: true,
    batchSize: 500,
    concurrency: 8,
    waitTimeoutMs: 300_000,
  });
  if (s.accepted !== s.sent || s.late !== 0) throw new Error(`replay: ${JSON.stringify(s)}`);
  return {
    clicksPerSecond: s.clicksPerSecond,
    seconds: s.elapsedMs / 1000,
    ackP50Ms: s.ackLatencyP50Ms,
    ackP99Ms: s.ackLatencyP99Ms,
    clicks: s.sent,
    lastSequence: BigInt(s.lastStreamSequence),
  };
}

/**
 * At 100 clicks/s of reference traffic, probes: a new user clicks page A, then page B; from sending B until the gateway's
 * Recommendation(A) lists B. The probes and the traffic each run in a process of their own (freshness-cli.ts).
 */
export async function freshness(seconds: number, file: string) {
  const out = await node([join(here, "freshness-cli.js"), String(seconds), file]);
  return JSON.parse(out.trim().split("\n").pop()!) as {
    probes: number;
    /** The background's clicks and the probes' two each. */
    clicks: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    acked: { p50Ms: number; p99Ms: number; maxMs: number };
  };
}

/** Embed RPC throughput over the first `pages` reference pages, from a client in a process of its own (embed-load-cli.ts). */
export async function embedThroughput(base: string, pages: number): Promise<{ docsPerSecond: number; model: string }> {
  const out = await node([join(here, "embed-load-cli.js"), base, String(pages)]);
  return JSON.parse(out.trim().split("\n").pop()!) as { docsPerSecond: number; model: string };
}
