import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { replay } from "@recsys/loadgen/replay";
import { node } from "./in-process-embedding.js";
import { percentiles } from "./open-loop.js";
import type { Click } from "./reference-data.js";
import { gatewayCall, url } from "./stack.js";

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
 * At 100 clicks/s of reference traffic, probes: a new user clicks page A, then page B; from sending B
 * until the gateway's Recommendation(A) lists B.
 */
export async function freshness(seconds: number, file: string) {
  const background = replay({
    file,
    rate: 100,
    target: url.ingest,
    covisit: url.covisit,
    wait: false,
    shiftTime: true,
    batchSize: 500,
    concurrency: 2,
    waitTimeoutMs: 60_000,
  });
  const run = Date.now().toString(36);
  const samples: number[] = [];
  // How long of each sample the click's own Clickstream call took (gateway, ingest, JetStream's ack): the rest is the consumers'.
  const acks: number[] = [];
  const end = performance.now() + seconds * 1000;
  await sleep(500);
  for (let n = 0; performance.now() < end; n++) {
    const a = `https://bench.example/${run}/${n}/a`;
    const b = `https://bench.example/${run}/${n}/b`;
    const userid = `bench-probe-${run}-${n}`;
    await gatewayCall("Clickstream", { event: { userid, url: a } });
    const t0 = performance.now();
    await gatewayCall("Clickstream", { event: { userid, url: b } });
    acks.push(performance.now() - t0);
    for (;;) {
      const rec = (await gatewayCall("Recommendation", { url: a })) as { items?: Array<{ recommendation: string }> };
      if (rec.items?.some((i) => i.recommendation === b)) break;
      if (performance.now() - t0 > 10_000) throw new Error(`probe ${n}: ${b} not visible after 10 s`);
    }
    samples.push(performance.now() - t0);
    await sleep(100);
  }
  const sent = await background;
  // The background's clicks and the probes' two each.
  return { probes: samples.length, clicks: sent.accepted + 2 * samples.length, ...percentiles(samples), acked: percentiles(acks) };
}

/** Embed RPC throughput over the first `pages` reference pages, from a client in a process of its own (embed-load-cli.ts). */
export async function embedThroughput(base: string, pages: number): Promise<{ docsPerSecond: number; model: string }> {
  const out = await node([join(here, "embed-load-cli.js"), base, String(pages)]);
  return JSON.parse(out.trim().split("\n").pop()!) as { docsPerSecond: number; model: string };
}
