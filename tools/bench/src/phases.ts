import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import { replay } from "@recsys/loadgen/replay";
import { percentiles } from "./open-loop.js";
import type { Click } from "./reference-data.js";
import { gatewayCall, url } from "./stack.js";

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

/**
 * Embed RPC throughput over the reference pages: calls of 16 texts, 8 in flight, so the server has texts waiting to batch
 * and a call's cost is shared by its texts in both runs: what differs between the two runs is the batching alone.
 */
export async function embedThroughput(base: string, texts: string[]) {
  // Uncompressed, as the gateway asks its backends: gzip of 16 × 384 floats costs CPU for nothing on loopback.
  const embedder = createClient(EmbedderService, createGrpcTransport({ baseUrl: base, acceptCompression: [] }));
  const { model } = await embedder.embed({ texts: texts.slice(0, 8) });
  const perCall = 16;
  const run = async (sample: string[]) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < sample.length) {
          const from = next;
          next += perCall;
          await embedder.embed({ texts: sample.slice(from, from + perCall) });
        }
      }),
    );
  };
  // Warm-up: one pass over the same texts, as the in-process anchor's batched figure comes after its own pass at batch 1. After
  // only 512 texts the paths of the client and the server were still compiling: that pass ran 20-35% slower than the next.
  await run(texts);
  const t0 = performance.now();
  await run(texts);
  return { docsPerSecond: texts.length / ((performance.now() - t0) / 1000), model };
}
