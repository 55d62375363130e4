import { spawn } from "node:child_process";
import { cpus } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { encodeClickBatch, Topology, type Click as BusClick, natsServers } from "@recsys/bus";
import { waitFor } from "@recsys/loadgen/sender";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import getPort from "get-port";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../../../scripts/reset.mjs";
// @ts-expect-error plain ESM script shared with `pnpm stack:up` and `pnpm cluster:up`
import { serviceArgs } from "../../../scripts/service-command.mjs";
import { root, type Click } from "./reference-data.js";
import { machine } from "./machine.js";
import { buckets, quantileBetween, samples, total } from "./service-metrics.js";
import { stopChild, url } from "./stack.js";

// What analytics costs: its CPU per click and throughput on clicks it counts, and how long a closed window takes to be
// emitted, from its own histogram.

const LAG = "recsys_analytics_emission_lag_seconds";

/** A reading of an analytics to measure a phase from. */
async function analyticsReadingOf(base: string) {
  const s = await samples(base);
  return { cpuSeconds: total(s, "process_cpu_seconds_total"), machineCpuSeconds: machineCpuSeconds(), lag: buckets(s, LAG), atMs: performance.now() };
}

/** CPU time every process on the machine has used (all cores): analytics' work is also PostgreSQL's and the broker's. */
function machineCpuSeconds(): number {
  return cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0) / 1000;
}

/** The stack's analytics' progress. */
export const stackAnalyticsProgress = () => progressOf(url.analytics)();

/** Waits until analytics has applied every CLICKS message up to `lastSequence` (a fresh analytics first reads the whole stream). */
export async function waitForAnalytics(lastSequence: bigint) {
  const analytics = createClient(AnalyticsService, createGrpcTransport({ baseUrl: url.analytics }));
  let floor = 0n;
  await waitFor(
    async () => (floor = (await analytics.progress({})).ackFloorStreamSequence) >= lastSequence,
    1_800_000,
    async () => `analytics has applied up to stream sequence ${floor}, not ${lastSequence},`,
  );
}

type Reading = Awaited<ReturnType<typeof analyticsReadingOf>>;

/** Emission lag quantiles (ms) of the windows closed between two readings. */
export function emissionLag(from: Reading, to: Reading) {
  const ms = (q: number) => {
    const s = quantileBetween(from.lag, to.lag, q);
    return s === undefined ? null : Math.round(s * 1000 * 10) / 10;
  };
  return { p50Ms: ms(0.5), p99Ms: ms(0.99), windows: (to.lag.get(Infinity) ?? 0) - (from.lag.get(Infinity) ?? 0) };
}

/** analytics' progress in a namespace, through its own RPC. */
function progressOf(base: string) {
  const client = createClient(AnalyticsService, createGrpcTransport({ baseUrl: base }));
  return () => client.progress({});
}

/**
 * analytics alone, in a namespace of its own (its own CLICKS, watermark and schema), fed the reference clicks straight on CLICKS as
 * ingest would, in event-time order so that none is late: the stack's own analytics has a watermark near now, behind which every
 * replay of the past is late. First the hour as fast as it takes it (clicks per second applied; CPU per click until every window is
 * emitted and published), then the next hour's clicks: 3,400 at once (ten minutes of event time, so windows close from then on), then
 * 100 clicks/s, 10 a message, for `seconds`, during which emission lag (the watermark closing a window to the window emitted) is
 * read from its histogram. CPU is analytics' own, and the machine's above what it uses idle (PostgreSQL and the broker work for
 * analytics too, and the bench sends the clicks).
 */
export async function isolatedAnalytics(clicks: Click[], seconds: number) {
  const namespace = `bench${Date.now().toString(36)}an`;
  const port = await getPort({ host: "127.0.0.1" });
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, serviceArgs(root, "analytics") as string[], {
    env: { ...process.env, ANALYTICS_PORT: String(port), RECSYS_NAMESPACE: namespace, LOG_LEVEL: "warn" },
    stdio: "ignore",
  });
  const nc = await connect({ servers: natsServers(machine.nats) });
  const topology = new Topology(namespace);
  try {
    await waitFor(
      () =>
        fetch(`${base}/healthz`).then(
          (r) => r.ok,
          () => false,
        ),
      60_000,
      async () => "the bench's own analytics is not healthy",
    );
    const progress = progressOf(base);
    const js = jetstream(nc);
    let messages = 0;
    let lastSequence = 0n;
    const ordered = [...clicks].sort((a, b) => Date.parse(a.event_time) - Date.parse(b.event_time));
    const asClick = (c: Click, i: number, hour: number) =>
      create(ClickSchema, {
        eventId: `bench-${hour}-${i}`,
        userid: c.userid,
        url: c.url,
        eventTimeMs: BigInt(Date.parse(c.event_time) + hour * 3_600_000),
        ingestTimeMs: BigInt(Date.now()),
      });
    const send = async (batch: BusClick[]) => {
      const { data, headers } = encodeClickBatch(batch);
      const ack = await js.publish(topology.clicksSubject(messages++ % 8), data, { headers });
      lastSequence = BigInt(ack.seq);
    };
    const caughtUp = () =>
      waitFor(
        async () => (await progress()).ackFloorStreamSequence >= lastSequence,
        600_000,
        async () => `the bench's own analytics has not applied up to stream sequence ${lastSequence}`,
      );

    // Everything emitted so far is on CLICK_METRICS: its CPU is the clicks' that closed those windows.
    const allPublished = (idle: boolean) =>
      waitFor(
        async () => {
          const p = await progress();
          return p.emittedBefore !== "" && p.publishedBefore === p.emittedBefore && (!idle || Date.parse(p.emittedBefore) > Date.parse(p.watermark));
        },
        600_000,
        async () => "the bench's own analytics has not published every window",
      );

    // The machine's CPU while nothing is sent (the stack's idle loops): taken off the machine's figures below.
    const idleFrom = await analyticsReadingOf(base);
    await sleep(5_000);
    const r0 = await analyticsReadingOf(base);
    const idlePerSecond = (r0.machineCpuSeconds - idleFrom.machineCpuSeconds) / ((r0.atMs - idleFrom.atMs) / 1000);
    const aboveIdle = (from: Reading, to: Reading) => to.machineCpuSeconds - from.machineCpuSeconds - (idlePerSecond * (to.atMs - from.atMs)) / 1000;
    for (let i = 0; i < ordered.length; i += 100) await send(ordered.slice(i, i + 100).map((c, k) => asClick(c, i + k, 0)));
    await caughtUp();
    const applied = performance.now();
    // The stream idle: every window is emitted (after IDLE_EMIT_MS, 10 s) and published, 594,216 rows or more.
    await allPublished(true);
    const r1 = await analyticsReadingOf(base);

    const head = 3_400;
    for (let i = 0; i < head; i += 100) await send(ordered.slice(i, Math.min(i + 100, head)).map((c, k) => asClick(c, i + k, 1)));
    await caughtUp();
    await allPublished(false);
    const r2 = await analyticsReadingOf(base);
    const paced = Math.min(ordered.length - head, 100 * seconds);
    const start = performance.now();
    for (let i = 0; i < paced; i += 10) {
      const wait = start + i * 10 - performance.now();
      if (wait > 0) await sleep(wait);
      await send(ordered.slice(head + i, head + Math.min(i + 10, paced)).map((c, k) => asClick(c, head + i + k, 1)));
    }
    await caughtUp();
    await allPublished(false);
    const r3 = await analyticsReadingOf(base);
    const p = await progress();
    if (p.lateClicks !== 0n) throw new Error(`the bench's own analytics found ${p.lateClicks} late clicks in clicks sent in order`);
    const perClick = (seconds: number, n: number) => (seconds * 1e6) / n;
    return {
      clicksPerSecond: ordered.length / ((applied - r0.atMs) / 1000),
      cpuMicrosPerClick: perClick(r1.cpuSeconds - r0.cpuSeconds, ordered.length),
      machineCpuMicrosPerClick: perClick(aboveIdle(r0, r1), ordered.length),
      cpuMicrosPerClickAt100: perClick(r3.cpuSeconds - r2.cpuSeconds, paced),
      machineCpuMicrosPerClickAt100: perClick(aboveIdle(r2, r3), paced),
      lag: emissionLag(r2, r3),
    };
  } finally {
    await stopChild(child);
    await nc.close();
    await resetNamespace(namespace);
  }
}
