#!/usr/bin/env node
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { mergeCost, redisBound, sqlBaseline } from "./baselines.js";
import { type LatencySummary, median } from "./open-loop.js";
import { isolatedAnalytics, stackAnalyticsProgress, waitForAnalytics } from "./analytics.js";
import { archiveCost, archiveReading, waitArchived } from "./archive.js";
import { defaultModelDir, ensureTransformerModel, type InProcessBatching, inProcessBatching, transformerModelDir } from "./in-process-embedding.js";
import { highestRateWithin, loadPhase, pairedRounds, startBareServer, whileIngesting } from "./anchors.js";
import { embedThroughput, freshness, ingestToVisible, runFile } from "./phases.js";
import { clicksFile, lines, pagesFile, root, type Click, type Page } from "./reference-data.js";
import { type CovisitCost, cpuMicros, withCovisitCpu } from "./recommendation.js";
import { clicksApplied, closeGateway, ensureStack, log, quiet, rssMiB, stackPid, startUnbatchedEmbedder, url } from "./stack.js";

/** A side's runs as one figure: their p50s and p99s averaged, the largest max, every request and error. */
function bothRuns(runs: LatencySummary[]): LatencySummary & { p99MsRuns: number[] } {
  const mean = (f: (s: LatencySummary) => number) => round(runs.reduce((n, s) => n + f(s), 0) / runs.length);
  return {
    requests: runs.reduce((n, s) => n + s.requests, 0),
    errors: runs.reduce((n, s) => n + s.errors, 0),
    p50Ms: mean((s) => s.p50Ms),
    p99Ms: mean((s) => s.p99Ms),
    maxMs: Math.max(...runs.map((s) => s.maxMs)),
    achievedPerSecond: mean((s) => s.achievedPerSecond),
    p99MsRuns: runs.map((s) => s.p99Ms),
  };
}
const latency = (s: LatencySummary) => ({ p50_ms: s.p50Ms, p99_ms: s.p99Ms, max_ms: s.maxMs, errors: s.errors, achieved_rps: Math.round(s.achievedPerSecond) });

async function main(opts: { json?: string; quick: boolean }) {
  const clicks = lines<Click>(clicksFile);
  const pages = lines<Page>(pagesFile);
  const users = [...new Set(clicks.map((c) => c.userid))];
  const urls = [...new Set(clicks.map((c) => c.url))];
  const rateSeconds = opts.quick ? 3 : 10;
  await ensureStack(users[0]!);

  log("SQL baseline");
  const sqlMs = await sqlBaseline(clicks);
  log("Redis bound");
  const bound = await redisBound(clicks);
  log("Recommendation's merge of shards, in the store");
  const merge = await mergeCost(clicks);
  const run = `bench${Date.now().toString(36)}`;
  log("analytics catching up with CLICKS");
  await waitForAnalytics(await clicksApplied());
  // What analytics costs the rest: the same phase with the stack's analytics running, then paused (SIGSTOP). Running first: the
  // stack's analytics has one watermark, and clicks of the hour before now are late behind a phase that already sent them.
  const analyticsBefore = await stackAnalyticsProgress();
  const archiveBefore = await archiveReading();
  log("ingest to visible (analytics and the archive consuming too)");
  const ingest = await ingestToVisible(runFile(clicks, `${run}a`));
  await waitForAnalytics(ingest.lastSequence);
  const analyticsAfter = await stackAnalyticsProgress();
  log("the archive closing its files");
  await waitArchived(ingest.lastSequence);
  const archiveIngest = archiveCost(archiveBefore, await archiveReading(), ingest.clicks);
  // The same phase with one service paused (SIGSTOP) while it runs, then resumed and caught up.
  const pausedPhase = async (service: string, label: string, catchUp: (lastSequence: bigint) => Promise<void>) => {
    const pid = stackPid(service);
    if (pid === undefined) return undefined;
    log(`ingest to visible, ${service} paused`);
    process.kill(pid, "SIGSTOP");
    let phase: Awaited<ReturnType<typeof ingestToVisible>>;
    try {
      phase = await ingestToVisible(runFile(clicks, `${run}${label}`));
    } finally {
      process.kill(pid, "SIGCONT");
    }
    log(`${service} catching up with CLICKS`);
    await catchUp(phase.lastSequence);
    return phase;
  };
  const ingestAnalyticsPaused = await pausedPhase("analytics", "p", waitForAnalytics);
  const ingestArchivePaused = await pausedPhase("archive", "q", waitArchived);
  log("freshness at 100 clicks/s, once the stack has folded in the clicks before");
  await quiet();
  const freshSeconds = opts.quick ? 4 : 15;
  const archiveBeforeFresh = await archiveReading();
  const fresh = await freshness(freshSeconds, runFile(clicks, `${run}b`, 100 * (freshSeconds + 2)));
  log("the archive closing its files");
  await waitArchived(await clicksApplied());
  const archiveFresh = archiveCost(archiveBeforeFresh, await archiveReading(), fresh.clicks);
  log("analytics alone, in a namespace of its own");
  const analytics = await isolatedAnalytics(clicks, opts.quick ? 5 : 20);
  // The same urls and users, in the same order, for the gateway and the bare server: request i asks about the i-th.
  const order = <T>(items: T[]) => items.map((_, i) => items[(i * 7919) % items.length]!);
  const recBodies = order(urls).map((u) => ({ url: u }));
  const simBodies = order(users).map((u) => ({ userid: u }));
  const bare = await startBareServer();
  const gateway = url.gateway;
  let anchors: Awaited<ReturnType<typeof queryPhases>>;
  async function queryPhases() {
    const gatewayRec = (bodies: unknown[] = recBodies) => loadPhase(gateway, "Recommendation", 1000, rateSeconds, bodies);
    log(`Recommendation at 1,000 requests/s, the gateway and the bare server by turns (${RATIO_ROUNDS} rounds)`);
    // The gateway's CPU a request, from its first round.
    let firstRecCost: CovisitCost | undefined;
    const recRounds = await pairedRounds(
      RATIO_ROUNDS,
      async (round) => (round > 0 ? gatewayRec() : (firstRecCost = await withCovisitCpu(() => gatewayRec())).latencies),
      () => loadPhase(bare.url, "Recommendation", 1000, rateSeconds, recBodies),
    );
    const recCost = firstRecCost!;
    // What leaving out a user's pages costs: the urls of reference clicks (popular pages more often), asked without the userid,
    // then with the userid of the click (their pages of the last 24 h are left out), in the same order. By turns, three times:
    // the gateway's CPU a request moved by 15% between two phases alike at this rate, more than the exclusions' share of it, so
    // each round's ratio and their median.
    const byClick = order(clicks);
    const recommendationCost = (bodies: unknown[]) => withCovisitCpu(() => gatewayRec(bodies));
    const clickedBodies = byClick.map((c) => ({ url: c.url }));
    const userBodies = byClick.map((c) => ({ url: c.url, userid: c.userid }));
    const userRounds: Array<{ clicked: CovisitCost; user: CovisitCost; ratio: number }> = [];
    for (let round = 0; round < USERID_ROUNDS; round++) {
      log(`Recommendation of the urls of clicks, without then with the userid of the click, at 1,000 requests/s (${round + 1} of ${USERID_ROUNDS})`);
      const clicked = await recommendationCost(clickedBodies);
      const user = await recommendationCost(userBodies);
      userRounds.push({ clicked, user, ratio: cpuMicros(user) / cpuMicros(clicked) });
    }
    const exclusions = { ...median(userRounds, (r) => r.ratio), ratios: userRounds.map((r) => r.ratio) };
    log("Recommendation through the gateway at rising rates, until its p99 passes 20 ms");
    const sweep = await highestRateWithin(opts.quick ? [2000, 3000] : [2000, 3000, 4000], 20, (rate) =>
      loadPhase(gateway, "Recommendation", rate, rateSeconds, recBodies),
    );
    const recBare3000 = await loadPhase(bare.url, "Recommendation", 3000, rateSeconds, recBodies);
    log(`SimilarContent at 500 requests/s, the gateway and the bare server by turns (${RATIO_ROUNDS} rounds)`);
    const simRounds = await pairedRounds(
      RATIO_ROUNDS,
      () => loadPhase(gateway, "SimilarContent", 500, rateSeconds, simBodies),
      () => loadPhase(bare.url, "SimilarContent", 500, rateSeconds, simBodies),
    );
    log("the same two at their rates while 1,000 clicks/s are ingested");
    const clicksPerPhase = 1000 * (Math.min(rateSeconds, 3) + rateSeconds + 2);
    const ingesting = async (label: string, method: string, base: string, rate: number, bodies: unknown[]) =>
      (await whileIngesting(runFile(clicks, `${run}${label}`, clicksPerPhase), () => loadPhase(base, method, rate, rateSeconds, bodies))).result;
    const recBusy = await ingesting("r", "Recommendation", gateway, 1000, recBodies);
    const recBareBusy = await ingesting("s", "Recommendation", bare.url, 1000, recBodies);
    const simBusy = await ingesting("t", "SimilarContent", gateway, 500, simBodies);
    const simBareBusy = await ingesting("u", "SimilarContent", bare.url, 500, simBodies);
    return { recCost, recRounds, exclusions, sweep, recBare3000, simRounds, recBusy, recBareBusy, simBusy, simBareBusy };
  }
  try {
    anchors = await queryPhases();
  } finally {
    bare.stop();
  }
  const { recCost, recRounds, exclusions, sweep, recBare3000, simRounds, recBusy, recBareBusy, simBusy, simBareBusy } = anchors;
  const { clicked: recClicked, user: recUser, ratios: userRatios } = exclusions;
  const rec = bothRuns(recRounds.gateway);
  const recBare = bothRuns(recRounds.bare);
  const sim = bothRuns(simRounds.gateway);
  const simBare = bothRuns(simRounds.bare);
  log("embedding, batched and not, once the stack has folded in the clicks ingested during the query phases");
  await quiet();
  const embedPages = opts.quick ? 400 : pages.length;
  // The RPC and its anchor (the same pages through the same queue and model in one process, without gRPC) by turns, five
  // times each, and the median of each: one run of the anchor alone moved by a quarter between runs on this machine. The
  // machine's slow spells last longer than a round, so each round's RPC over its own anchor cancels them: their median is
  // the share the goal is read from.
  const rpcRuns: Array<Awaited<ReturnType<typeof embedThroughput>>> = [];
  const inProcessRuns: InProcessBatching[] = [];
  for (let round = 0; round < EMBED_ROUNDS; round++) {
    log(`embedding through Embed, then in-process, the stack's model (${round + 1} of ${EMBED_ROUNDS})`);
    rpcRuns.push(await embedThroughput(url.embedder, embedPages));
    inProcessRuns.push(await inProcessBatching(defaultModelDir, embedPages));
  }
  const batched = median(rpcRuns, (r) => r.docsPerSecond);
  const inProcess = median(inProcessRuns, (r) => r.batched.docsPerSecond);
  const roundShares = rpcRuns.map((r, i) => r.docsPerSecond / inProcessRuns[i]!.batched.docsPerSecond);
  log("embedding through Embed at max batch 1");
  const unbatchedEmbedder = await startUnbatchedEmbedder();
  let unbatched: Awaited<ReturnType<typeof embedThroughput>>;
  try {
    unbatched = await embedThroughput(unbatchedEmbedder.url, embedPages);
  } finally {
    await unbatchedEmbedder.stop();
  }
  // A transformer costs ~13 ms a page at batch 1 on 2 cores, so a sample of the pages: what batching saves on a model that works per token.
  log("embedding in-process, the transformer-shaped test model, batch 1 and batched");
  const transformer = await inProcessBatching(await ensureTransformerModel(), opts.quick ? 96 : 512);
  log("embedding in-process, the transformer-shaped test model, titles alone");
  const transformerTitles = await inProcessBatching(transformerModelDir, opts.quick ? 256 : 1024, "titles");
  const rss = await rssMiB();

  const baselineClicksPerSecond = clicks.length / (sqlMs / 1000);
  const result = {
    quick: opts.quick,
    ingest_to_visible_clicks_per_s: Math.round(ingest.clicksPerSecond),
    ingest_ack_p50_ms: ingest.ackP50Ms,
    ingest_ack_p99_ms: ingest.ackP99Ms,
    freshness_p50_ms_at_100_per_s: round(fresh.p50Ms),
    freshness_p99_ms_at_100_per_s: round(fresh.p99Ms),
    freshness_acked_p50_ms_at_100_per_s: round(fresh.acked.p50Ms),
    freshness_acked_p99_ms_at_100_per_s: round(fresh.acked.p99Ms),
    freshness_probes: fresh.probes,
    ingest_to_visible_clicks_per_s_analytics_paused: ingestAnalyticsPaused ? Math.round(ingestAnalyticsPaused.clicksPerSecond) : null,
    ingest_to_visible_clicks_per_s_archive_paused: ingestArchivePaused ? Math.round(ingestArchivePaused.clicksPerSecond) : null,
    archive_cpu_us_per_click: round(archiveIngest.cpuMicrosPerClick),
    archive_cpu_us_per_click_at_100_per_s: round(archiveFresh.cpuMicrosPerClick),
    archive_lag_p50_ms_at_100_per_s: archiveFresh.lagP50Ms,
    archive_lag_p99_ms_at_100_per_s: archiveFresh.lagP99Ms,
    ingest_phase_clicks_analytics_applied: Number(analyticsAfter.appliedClicks - analyticsBefore.appliedClicks),
    ingest_phase_clicks_analytics_late: Number(analyticsAfter.lateClicks - analyticsBefore.lateClicks),
    analytics_clicks_per_s: Math.round(analytics.clicksPerSecond),
    analytics_cpu_us_per_click: round(analytics.cpuMicrosPerClick),
    analytics_machine_cpu_us_per_click: round(analytics.machineCpuMicrosPerClick),
    analytics_cpu_us_per_click_at_100_per_s: round(analytics.cpuMicrosPerClickAt100),
    analytics_machine_cpu_us_per_click_at_100_per_s: round(analytics.machineCpuMicrosPerClickAt100),
    analytics_emission_lag_p50_ms_at_100_per_s: analytics.lag.p50Ms,
    analytics_emission_lag_p99_ms_at_100_per_s: analytics.lag.p99Ms,
    analytics_windows_closed_at_100_per_s: analytics.lag.windows,
    recommendation_p50_ms_at_1000_rps: rec.p50Ms,
    recommendation_p99_ms_at_1000_rps: rec.p99Ms,
    recommendation_at_1000_rps: latency(rec),
    recommendation_bare_p50_ms_at_1000_rps: recBare.p50Ms,
    recommendation_bare_p99_ms_at_1000_rps: recBare.p99Ms,
    recommendation_bare_at_1000_rps: latency(recBare),
    // Each side's runs, by turns (pairedRounds); the figures above are their means.
    recommendation_p99_ms_at_1000_rps_runs: rec.p99MsRuns,
    recommendation_bare_p99_ms_at_1000_rps_runs: recBare.p99MsRuns,
    // The gateway's p99 over the bare server's, the median of the rounds' (goal: at most 2).
    recommendation_p99_over_bare: round(median(recRounds.ratios, (x) => x)),
    recommendation_p99_over_bare_runs: recRounds.ratios.map(round),
    // The mean of the gateway's p99s over the mean of the bare server's.
    recommendation_p99_over_bare_of_means: round(rec.p99Ms / recBare.p99Ms),
    // The highest rate tried (1,000 a step) at which the gateway's p99 stayed within 20 ms (goal: at least 3,000).
    recommendation_max_rps_p99_within_20ms: rec.p99Ms <= 20 && rec.errors === 0 ? sweep.best || 1000 : 0,
    recommendation_p99_ms_by_rps: { "1000": rec.p99Ms, ...sweep.p99MsByRate },
    recommendation_bare_p99_ms_at_3000_rps: recBare3000.p99Ms,
    recommendation_p99_ms_at_1000_rps_ingesting_1000_per_s: recBusy.p99Ms,
    recommendation_bare_p99_ms_at_1000_rps_ingesting_1000_per_s: recBareBusy.p99Ms,
    recommendation_ingesting_at_1000_rps: latency(recBusy),
    recommendation_gateway_cpu_us_per_request: round(recCost.gatewayCpuMicros),
    recommendation_covisit_cpu_us_per_request: round(recCost.covisitCpuMicros),
    recommendation_redis_cpu_us_per_request: round(recCost.redisCpuMicros),
    recommendation_of_clicked_urls_p99_ms_at_1000_rps: recClicked.latencies.p99Ms,
    recommendation_of_clicked_urls_gateway_cpu_us_per_request: round(recClicked.gatewayCpuMicros),
    recommendation_of_clicked_urls_covisit_cpu_us_per_request: round(recClicked.covisitCpuMicros),
    recommendation_of_clicked_urls_redis_cpu_us_per_request: round(recClicked.redisCpuMicros),
    recommendation_with_userid_p99_ms_at_1000_rps: recUser.latencies.p99Ms,
    recommendation_with_userid_at_1000_rps: latency(recUser.latencies),
    recommendation_with_userid_gateway_cpu_us_per_request: round(recUser.gatewayCpuMicros),
    recommendation_with_userid_covisit_cpu_us_per_request: round(recUser.covisitCpuMicros),
    recommendation_with_userid_redis_cpu_us_per_request: round(recUser.redisCpuMicros),
    // The exclusions' cost: all three processes' CPU per request with the userid over the same without, the median of the
    // rounds' (goal: at most 1.2); the figures above are that round's.
    recommendation_userid_cpu_ratio: round(median(userRatios, (x) => x)),
    recommendation_userid_cpu_ratio_runs: userRatios.map(round),
    similar_content_p50_ms_at_500_rps: sim.p50Ms,
    similar_content_p99_ms_at_500_rps: sim.p99Ms,
    similar_content_at_500_rps: latency(sim),
    similar_content_bare_p50_ms_at_500_rps: simBare.p50Ms,
    similar_content_bare_p99_ms_at_500_rps: simBare.p99Ms,
    similar_content_bare_at_500_rps: latency(simBare),
    similar_content_p99_ms_at_500_rps_runs: sim.p99MsRuns,
    similar_content_bare_p99_ms_at_500_rps_runs: simBare.p99MsRuns,
    // The gateway's p99 over the bare server's, the median of the rounds' (goal: at most 2).
    similar_content_p99_over_bare: round(median(simRounds.ratios, (x) => x)),
    similar_content_p99_over_bare_runs: simRounds.ratios.map(round),
    // The mean of the gateway's p99s over the mean of the bare server's.
    similar_content_p99_over_bare_of_means: round(sim.p99Ms / simBare.p99Ms),
    similar_content_p99_ms_at_500_rps_ingesting_1000_per_s: simBusy.p99Ms,
    similar_content_bare_p99_ms_at_500_rps_ingesting_1000_per_s: simBareBusy.p99Ms,
    similar_content_ingesting_at_500_rps: latency(simBusy),
    embed_model: batched.model,
    embed_docs_per_s: Math.round(batched.docsPerSecond),
    embed_docs_per_s_max_batch_1: Math.round(unbatched.docsPerSecond),
    embed_batching_speedup: round(batched.docsPerSecond / unbatched.docsPerSecond),
    embed_in_process_model: inProcess.model,
    embed_in_process_docs_per_s: inProcess.batched.docsPerSecond,
    embed_docs_per_s_runs: rpcRuns.map((r) => Math.round(r.docsPerSecond)),
    embed_in_process_docs_per_s_runs: inProcessRuns.map((r) => r.batched.docsPerSecond),
    // The RPC's docs/s over the same model's in-process docs/s, the median of the rounds' (goal: at least 0.7); null when the
    // stack runs another model.
    embed_rpc_over_in_process: inProcess.model === batched.model ? round(median(roundShares, (x) => x)) : null,
    embed_rpc_over_in_process_runs: roundShares.map(round),
    // The median RPC run over the median in-process run, which may come from different rounds.
    embed_rpc_over_in_process_of_medians: inProcess.model === batched.model ? round(batched.docsPerSecond / inProcess.batched.docsPerSecond) : null,
    embed_transformer_model: transformer.model,
    embed_transformer_pages: transformer.pages,
    embed_transformer_docs_per_s_max_batch_1: transformer.batch1.docsPerSecond,
    embed_transformer_docs_per_s: transformer.batched.docsPerSecond,
    embed_transformer_padding_share: round(transformer.batched.paddingShare),
    // Batched over batch 1 on the transformer, in the same process one after the other (goal: at least 3).
    embed_transformer_batching_speedup: transformer.speedup,
    // The most any batching can give the transformer here: 128 of those pages sorted by length (nothing to pad) straight through
    // the model at batch 1 and at 4, 16, 32 and 64 (embedder's batching-ceiling.ts). The bound is the best pass over batch 1 through
    // the queue: what embed_transformer_batching_speedup cannot pass on this machine beyond the noise, whatever the batching policy.
    embed_transformer_batching_speedup_bound: transformer.speedupBound,
    embed_transformer_batching_ceiling: transformer.ceiling.ceiling,
    embed_transformer_ceiling_best_batch: transformer.ceiling.best.batch,
    embed_transformer_tokens_p50: transformer.ceiling.tokensP50,
    // The same on the pages' titles alone (about 6 tokens, as short as stated interests): where a run's fixed cost dominates.
    embed_transformer_titles_docs_per_s_max_batch_1: transformerTitles.batch1.docsPerSecond,
    embed_transformer_titles_docs_per_s: transformerTitles.batched.docsPerSecond,
    embed_transformer_titles_batching_speedup: transformerTitles.speedup,
    embed_transformer_titles_batching_speedup_bound: transformerTitles.speedupBound,
    embed_transformer_titles_batching_ceiling: transformerTitles.ceiling.ceiling,
    embed_transformer_titles_tokens_p50: transformerTitles.ceiling.tokensP50,
    sql_baseline_recompute_ms: Math.round(sqlMs),
    sql_baseline_clicks_per_s: Math.round(baselineClicksPerSecond),
    // covisit's store answering Recommendation from the reference counts in 1 shard (one Redis) and in 6 (as on the Redis Cluster of
    // pnpm cluster:up), same Redis; recommendation_store_by_shards has 3 and 16 too.
    recommendation_store_redis_cpu_us_1_shard: round(merge["1"]!.redisCpuMicros),
    recommendation_store_redis_cpu_us_6_shards: round(merge["6"]!.redisCpuMicros),
    recommendation_store_p99_ms_1_shard: merge["1"]!.p99Ms,
    recommendation_store_p99_ms_6_shards: merge["6"]!.p99Ms,
    recommendation_merge_6_shards_redis_cpu_ratio: round(merge["6"]!.redisCpuMicros / merge["1"]!.redisCpuMicros),
    recommendation_store_by_shards: merge,
    redis_bound_clicks_per_s: Math.round(bound.clicksPerSecond),
    redis_cpu_us_per_click: round(bound.cpuMicrosPerClick),
    redis_bound_wall_clicks_per_s: Math.round(bound.wallClicksPerSecond),
    redis_commands_per_click: round(bound.commandsPerClick),
    redis_ops_per_s: Math.round(bound.redisOpsPerSecond),
    ours_over_baseline: round(ingest.clicksPerSecond / baselineClicksPerSecond),
    ours_over_bound: round(ingest.clicksPerSecond / bound.clicksPerSecond),
    rss_mib: rss,
  };
  printTable(result);
  if (opts.json) writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
  await closeGateway();
}

const round = (x: number) => Math.round(x * 100) / 100;
/** Rounds of Recommendation without and with the userid, by turns. */
const USERID_ROUNDS = 3;
/** Rounds of the Embed RPC and its in-process anchor, by turns. */
const EMBED_ROUNDS = 5;
/** Rounds of a query phase through the gateway and on the bare server, by turns. */
const RATIO_ROUNDS = 5;

function printTable(r: Record<string, unknown>) {
  const goals: Record<string, string> = {
    ingest_to_visible_clicks_per_s: ">= 10000",
    freshness_p99_ms_at_100_per_s: "<= 50",
    recommendation_p99_over_bare: "<= 2",
    recommendation_max_rps_p99_within_20ms: ">= 3000",
    similar_content_p99_over_bare: "<= 2",
    embed_transformer_batching_speedup: ">= 3",
    embed_rpc_over_in_process: ">= 0.7",
    recommendation_userid_cpu_ratio: "<= 1.2",
  };
  const rows = Object.entries(r).filter(([, v]) => typeof v !== "object" && typeof v !== "boolean");
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${String(v).padStart(10)}  ${goals[k] ? `goal ${goals[k]}` : ""}\n`);
  process.stdout.write(`${"rss_mib".padEnd(width)}  ${JSON.stringify(r.rss_mib)}\n`);
}

/**
 * --cluster: the same bench twice, each in a process of its own (the stack's addresses are read once, at start): on the single-node
 * stack (the default ports), then on a local cluster started for it (scripts/cluster.mjs up: three NATS servers, every stream on
 * three, Redis and PostgreSQL with replicas, two replicas of each service), against the first replica set's gateway and services;
 * then the cluster is stopped and the two columns printed side by side. Phases that pause a service of the stack (SIGSTOP) are
 * skipped on the cluster.
 */
async function beside(opts: { json?: string; quick: boolean }) {
  const self = fileURLToPath(import.meta.url);
  const work = mkdtempSync(join(tmpdir(), "recsys-bench-cluster-"));
  // The cluster's PostgreSQL runs as its own user, which must reach its directories under this one.
  chmodSync(work, 0o755);
  const run = (file: string, env: NodeJS.ProcessEnv) => {
    const r = spawnSync(process.execPath, [self, "--json", file, ...(opts.quick ? ["--quick"] : [])], { stdio: ["ignore", "ignore", "inherit"], env });
    if (r.status !== 0) throw new Error(`the bench exited with ${r.status} (${file})`);
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  };
  try {
    log("single node: the stack on the default ports");
    const single = run(join(work, "single.json"), process.env);
    log("cluster: starting it (scripts/cluster.mjs up)");
    const clusterEnv = { ...process.env, RECSYS_CLUSTER_DIR: join(work, "cluster") };
    const up = spawnSync(process.execPath, [join(root, "scripts/cluster.mjs"), "up"], {
      env: clusterEnv,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (up.status !== 0) throw new Error("the cluster did not start");
    const first = (name: string) =>
      up.stdout
        .split("\n")
        .find((l) => l.startsWith(`${name} `))!
        .split(" ")[1]!;
    let cluster: Record<string, unknown>;
    try {
      cluster = run(join(work, "cluster.json"), {
        ...process.env,
        GATEWAY_URL: first("gateway"),
        INGEST_URL: first("ingest"),
        COVISIT_URL: first("covisit"),
        EMBEDDER_URL: first("embedder"),
        PROFILE_URL: first("profile"),
        ANALYTICS_URL: first("analytics"),
        ARCHIVE_URL: first("archive"),
        NATS_URL: first("nats"),
        REDIS_URL: first("redis"),
        // As the cluster's services keep the counts (scripts/cluster.mjs): the bare server and the Redis bound read them so.
        COVISIT_SHARDS: "6",
        DATABASE_URL: first("postgres"),
        // No pid files: the phases that pause one of the stack's services are skipped.
        RECSYS_STACK_DIR: join(work, "no-stack"),
      });
    } finally {
      spawnSync(process.execPath, [join(root, "scripts/cluster.mjs"), "down"], { env: clusterEnv, stdio: ["ignore", "ignore", "inherit"] });
    }
    const keys = Object.keys(single).filter((k) => typeof single[k] === "number");
    const width = Math.max(...keys.map((k) => k.length));
    process.stdout.write(`${"".padEnd(width)}  ${"single".padStart(10)}  ${"cluster".padStart(10)}\n`);
    for (const k of keys) process.stdout.write(`${k.padEnd(width)}  ${String(single[k]).padStart(10)}  ${String(cluster[k] ?? "").padStart(10)}\n`);
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify({ single, cluster }, null, 2)}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

new Command("bench")
  .description("Benchmarks the running stack (started if needed) against the reference workload, beside the SQL baseline and the Redis bound.")
  .option("--json <file>", "also write the figures as JSON")
  .option("--quick", "shorter phases and fewer pages (about a minute)", false)
  .option("--cluster", "the same on a local cluster (pnpm cluster:up) beside the single-node stack, side by side", false)
  .action((opts: { json?: string; quick: boolean; cluster: boolean }) => (opts.cluster ? beside(opts) : main(opts)))
  .parseAsync()
  .catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
