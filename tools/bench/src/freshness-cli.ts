#!/usr/bin/env node
// The freshness phase from a process of its own, its background traffic from another (the loadgen's replay), as the latency phases'
// load runs (load-cli.ts): in the bench's process, which holds every phase's data, the probes shared an event loop and a garbage
// collector with the replay that sends the background, and a probe timed their pauses. Three alternating pairs of 15 s phases on
// one stack: p99 43.3-48.9 ms with the replay in the probes' process, 34.9-39.5 ms with it in its own.
//   node dist/freshness-cli.js SECONDS FILE
// While FILE's clicks go into ingest at 100 a second (new times, so new ids), probes: a new user clicks page A, then page B,
// through the gateway; from sending B until the gateway's Recommendation(A) lists B. Prints {probes, clicks, p50Ms, p99Ms,
// maxMs, acked} as JSON, `acked` being the part of each probe that B's own Clickstream call took.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { node } from "./in-process-embedding.js";
import { percentiles } from "./open-loop.js";
import { root } from "./reference-data.js";
import { closeGateway, gatewayCall, url } from "./stack.js";

const [secondsArg, file] = process.argv.slice(2);
if (!secondsArg || !file) throw new Error("usage: freshness-cli.js SECONDS FILE");
const seconds = Number(secondsArg);

// Its progress lines are kept back, and told only if it fails.
const background = node(
  [join(root, "tools/loadgen/dist/main.js"), "replay", file, "--rate", "100", "--target", url.ingest, "--covisit", url.covisit, "--shift-time", "--json"],
  { quiet: true },
).then((out) => JSON.parse(out.trim().split("\n").pop()!) as { accepted: number });
const run = Date.now().toString(36);
const samples: number[] = [];
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
process.stdout.write(
  `${JSON.stringify({ probes: samples.length, clicks: sent.accepted + 2 * samples.length, ...percentiles(samples), acked: percentiles(acks) })}\n`,
);
await closeGateway();
