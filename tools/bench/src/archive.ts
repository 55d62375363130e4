import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArchiveService } from "@recsys/contracts/archive/v1/archive";
import { waitFor } from "@recsys/loadgen/sender";
import { buckets, quantileBetween, samples, total } from "./service-metrics.js";
import { url } from "./stack.js";

// What the archive costs: its CPU per click, and how long a click waits to be in a closed file.

const LAG = "recsys_archive_lag_seconds";

/** A reading of the stack's archive to measure a phase from. */
export async function archiveReading() {
  const s = await samples(url.archive);
  return { cpuSeconds: total(s, "process_cpu_seconds_total"), lag: buckets(s, LAG, { table: "clicks" }), atMs: performance.now() };
}
type Reading = Awaited<ReturnType<typeof archiveReading>>;

/** Waits until the archive has closed files holding every CLICKS message up to `lastSequence` (files close 30 s after their first click). */
export async function waitArchived(lastSequence: bigint) {
  const archive = createClient(ArchiveService, createGrpcTransport({ baseUrl: url.archive }));
  let through = 0n;
  await waitFor(
    async () => (through = (await archive.progress({})).tables.find((t) => t.table === "clicks")?.archivedThrough ?? 0n) >= lastSequence,
    300_000,
    async () => `the archive holds CLICKS through stream sequence ${through}, not ${lastSequence},`,
  );
}

/** The archive's CPU per click between two readings, and the lag quantiles (ms) of the clicks it closed files of between them. */
export function archiveCost(from: Reading, to: Reading, clicks: number) {
  const ms = (q: number) => {
    const s = quantileBetween(from.lag, to.lag, q);
    return s === undefined ? null : Math.round(s * 1000);
  };
  return { cpuMicrosPerClick: ((to.cpuSeconds - from.cpuSeconds) * 1e6) / clicks, lagP50Ms: ms(0.5), lagP99Ms: ms(0.99) };
}
