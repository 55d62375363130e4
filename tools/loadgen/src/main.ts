#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_PRODUCT_URL } from "./click-file.js";
import { CLICK_FORMATS, type ClickFormat } from "./click-formats.js";
import { formatContentSummary, loadContent } from "./content.js";
import { connectJsonGateway, evaluate, formatEvaluation, MAX_LIMIT, readTruth } from "./evaluate.js";
import { formatGenerateSummary, writeWorkload } from "./generate.js";
import { formatSummary, replay } from "./replay.js";
import type { LoadOptions } from "./sender.js";
import { TRUTH_FORMAT } from "./truth.js";
import { TOPICS } from "./vocabulary.js";
import { BEHAVIOUR, DEFAULT_PARAMS } from "./workload-params.js";

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a whole number >= 0");
  return n;
}
function positiveInt(v: string): number {
  const n = nonNegativeInt(v);
  if (n === 0) throw new InvalidArgumentError("must be >= 1");
  return n;
}
function share(v: string): number {
  const x = Number(v);
  if (v.trim() === "" || !(x >= 0 && x <= 1)) throw new InvalidArgumentError("must be a number in 0..1");
  return x;
}
function seed(v: string): number {
  const n = nonNegativeInt(v);
  if (n > 2 ** 32 - 1) throw new InvalidArgumentError("must be at most 4294967295");
  return n;
}
function rfc3339(v: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(v) || !Number.isFinite(Date.parse(v))) {
    throw new InvalidArgumentError("must be an RFC 3339 time, e.g. 2024-01-02T00:00:00Z");
  }
  return v;
}

/** Progress on stderr: a line rewritten in place on a TTY, else a line every 5 s. */
function progressPrinter(unit: string) {
  const tty = process.stderr.isTTY;
  let lastLog = 0;
  return {
    onProgress({ sent, accepted, elapsedMs }: { sent: number; accepted: number; elapsedMs: number }) {
      const rate = Math.round(sent / Math.max(elapsedMs / 1000, 0.001));
      if (tty) process.stderr.write(`\r\x1b[Ksent ${sent}  accepted ${accepted}  ${rate} ${unit}/s`);
      else if (elapsedMs - lastLog >= 5_000) {
        lastLog = elapsedMs;
        process.stderr.write(`sent ${sent} accepted ${accepted} ${rate} ${unit}/s\n`);
      }
    },
    /** Ends the progress line, shows the first rejected lines, prints the summary on stdout. */
    finish(summary: { rejections: Array<{ line: number; field: string; reason: string }> }, text: string, json: boolean) {
      if (tty) process.stderr.write("\n");
      for (const r of summary.rejections.slice(0, 5)) process.stderr.write(`rejected line ${r.line}: ${r.field}: ${r.reason}\n`);
      process.stdout.write(json ? `${JSON.stringify(summary)}\n` : `${text}\n`);
    },
  };
}

const program = new Command("loadgen").description(
  "Replays click and page files against the recommendation stack; generates workloads with known answers and evaluates the stack on them.",
);

/** The options replay and content share, as commander parses them. */
interface LoadFlags {
  rate: number;
  target: string;
  wait: boolean;
  batch: number;
  concurrency: number;
  waitTimeout: number;
  json: boolean;
}

/** A command that sends a file of `items` through ingest, with the options every such command has. */
function loadCommand(name: string, items: string, defaults: { rate: number; batch: number; waitTimeoutMs: number }) {
  return program
    .command(name)
    .option("--rate <n>", `${items} per second; 0 = as fast as the system takes them`, nonNegativeInt, defaults.rate)
    .option("--target <url>", "ingest service", process.env.INGEST_URL ?? "http://127.0.0.1:50051")
    .option("--batch <n>", `${items} per ingest call`, positiveInt, defaults.batch)
    .option("--concurrency <n>", "ingest calls in flight", positiveInt, 2)
    .option("--wait-timeout <ms>", "give up waiting after this long", positiveInt, defaults.waitTimeoutMs)
    .option("--json", "print the summary as JSON", false);
}

/** The shared options as the senders take them. */
const loadOptions = (file: string, o: LoadFlags, onProgress: LoadOptions["onProgress"]): LoadOptions => ({
  file,
  rate: o.rate,
  target: o.target,
  wait: o.wait,
  batchSize: o.batch,
  concurrency: o.concurrency,
  waitTimeoutMs: o.waitTimeout,
  onProgress,
});

loadCommand("replay", "clicks", { rate: 100, batch: 500, waitTimeoutMs: 300_000 })
  .description(
    "Replays clicks through ingest: one JSON object a line, ours ({userid, url, event_time, event?, properties?}), the Redpanda generator's ({timestamp, event, user_id, url, …}) or the AWS pipeline's ({timestamp, user_id, event_name, click_id, additional_data}).",
  )
  .argument("<file>", "clicks, one JSON object a line (.json or .json.gz)")
  .option("--product-url <template>", "url of an AWS-format click, {product_id} replaced", DEFAULT_PRODUCT_URL)
  .option("--covisit <url>", "covisit service, asked for progress by --wait", process.env.COVISIT_URL ?? "http://127.0.0.1:50052")
  .option("--wait", "return only when every click is visible in Recommendation", false)
  .option("--shift-time", "rewrite times to end now (gaps kept) and derive new ids", false)
  .action(async (file: string, o: LoadFlags & { covisit: string; shiftTime: boolean; productUrl: string }) => {
    const progress = progressPrinter("clicks");
    const summary = await replay({ ...loadOptions(file, o, progress.onProgress), covisit: o.covisit, shiftTime: o.shiftTime, productUrl: o.productUrl });
    progress.finish(summary, formatSummary(summary), o.json);
  });

loadCommand("content", "pages", { rate: 50, batch: 100, waitTimeoutMs: 600_000 })
  .description("Loads pages (one {id, url, title, text, _source_time} JSON object a line) through ingest.")
  .argument("<file>", "pages, one JSON object a line (.json or .json.gz)")
  .option("--embedder <url>", "embedder service, asked for progress by --wait", process.env.EMBEDDER_URL ?? "http://127.0.0.1:50053")
  .option("--profile <url>", "profile service, asked for progress by --wait", process.env.PROFILE_URL ?? "http://127.0.0.1:50054")
  .option("--wait", "return only when every page is embedded and stored", false)
  .action(async (file: string, o: LoadFlags & { embedder: string; profile: string }) => {
    const progress = progressPrinter("pages");
    const summary = await loadContent({ ...loadOptions(file, o, progress.onProgress), embedder: o.embedder, profile: o.profile });
    progress.finish(summary, formatContentSummary(summary), o.json);
  });

const GENERATE_HELP = `
Files written into DIR:
  content.json.gz      pages as in the reference content.json.gz, {"id", "url", "title", "text",
                       "_source_time"} a line. Page i is of topic i mod --topics; its title and
                       text are drawn from that topic's words (words of the reference pages, none
                       in two topics) among common words, so an embedding model tells topics apart.
  clickstream.json.gz  clicks as in the reference clickstream.json.gz, {"userid", "url",
                       "event_time"} a line in time order, plus "event_type" (landing, link or
                       search), "seconds_on_page" and "viewed_percent". replay sends userid, url and
                       event_time (and event_id, if there) and ignores the other fields.
  truth.json           the answers (format ${TRUTH_FORMAT}):
                       "paths": {topic, pages, followers} each; every follower clicks the pages in
                       order, the last within ${BEHAVIOUR.pathSpanSeconds} s of the first, so for the first page the
                       later ones should lead Recommendation;
                       "users": {userid, topic, clicked, heldOut} each; the preferred topic (null
                       for none), every page clicked, and the pages of the topic never clicked,
                       which SimilarContent should find;
                       "topics" with their pages; "params", "behaviour" and "counts".

The clicks: the paths' (paths x followers x path length), then of the rest --noise as background noise
(any user, page and second) and the others as browsing sessions of ${BEHAVIOUR.sessionClicks[0]}-${BEHAVIOUR.sessionClicks[1]} clicks ${BEHAVIOUR.sessionGapSeconds[0]}-${BEHAVIOUR.sessionGapSeconds[1]} s apart, one
for every user first (while the clicks last), then to users in proportion to a weight drawn for
each. ${BEHAVIOUR.preferringUsers * 100}% of the users prefer a topic (${BEHAVIOUR.topicAffinity * 100}% of their browsing on it), the rest browse every page
alike. Followers of a path are users of its topic, then users without one. Urls and user ids
depend on the seed, so workloads of two seeds do not mix in one namespace.

The defaults make ${Math.round(DEFAULT_PARAMS.clicks / DEFAULT_PARAMS.durationMinutes)} clicks a minute, as the reference clickstream does.

Example:
  loadgen generate --out /tmp/w --seed 7
  loadgen content /tmp/w/content.json.gz --rate 0 --wait
  loadgen replay /tmp/w/clickstream.json.gz --rate 0 --wait
  loadgen evaluate --truth /tmp/w/truth.json
`;

program
  .command("generate")
  .description(
    "Writes a synthetic workload with known answers: pages of a few topics, clicks with planted co-visit paths, per-user topic preferences and noise, and truth.json.",
  )
  .requiredOption("--out <dir>", "directory to write content.json.gz, clickstream.json.gz and truth.json into (created if missing)")
  .option("--users <n>", "users", positiveInt, DEFAULT_PARAMS.users)
  .option("--pages <n>", "pages", positiveInt, DEFAULT_PARAMS.pages)
  .option("--topics <n>", `topics, 1..${TOPICS.length} (${TOPICS.map((t) => t.name).join(", ")}, in that order)`, positiveInt, DEFAULT_PARAMS.topics)
  .option("--clicks <n>", "clicks in all", positiveInt, DEFAULT_PARAMS.clicks)
  .option("--paths <n>", "planted co-visit paths, spread over the topics in turn (default: 2 per topic)", nonNegativeInt)
  .option(
    "--path-length <n>",
    "pages of a path, its first included, 2..31; above --k of evaluate, a path can fill the top k",
    positiveInt,
    DEFAULT_PARAMS.pathLength,
  )
  .option("--followers <n>", "users who follow each path", positiveInt, DEFAULT_PARAMS.followers)
  .option("--noise <share>", "share of the clicks outside paths that are background noise", share, DEFAULT_PARAMS.noise)
  .option("--seed <n>", "seed, 0..4294967295: the same seed and options give the same bytes", seed, DEFAULT_PARAMS.seed)
  .option("--start <time>", "time of the earliest click, RFC 3339", rfc3339, DEFAULT_PARAMS.start)
  .option("--duration <minutes>", "minutes of event time the clicks span, >= 15", positiveInt, DEFAULT_PARAMS.durationMinutes)
  .addOption(
    new Option("--format <format>", "how clickstream.json.gz writes clicks: ours, or the Redpanda or AWS reference generator's, with their event types")
      .choices(CLICK_FORMATS)
      .default("ours"),
  )
  .option("--json", "print the summary as JSON", false)
  .addHelpText("after", GENERATE_HELP)
  .action(
    (o: {
      out: string;
      users: number;
      pages: number;
      topics: number;
      clicks: number;
      paths?: number;
      pathLength: number;
      followers: number;
      noise: number;
      seed: number;
      start: string;
      duration: number;
      format: ClickFormat;
      json: boolean;
    }) => {
      // Ingest refuses times more than its MAX_CLOCK_SKEW_MS (2 minutes by default) ahead of its clock.
      if (Date.parse(o.start) + o.duration * 60_000 > Date.now() + 2 * 60_000)
        throw new Error("--start: the clicks would reach into the future, and ingest refuses times more than 2 minutes ahead of its clock");
      const summary = writeWorkload(
        o.out,
        {
          users: o.users,
          pages: o.pages,
          topics: o.topics,
          clicks: o.clicks,
          ...(o.paths !== undefined ? { paths: o.paths } : {}),
          pathLength: o.pathLength,
          followers: o.followers,
          noise: o.noise,
          seed: o.seed,
          start: o.start,
          durationMinutes: o.duration,
        },
        o.format,
      );
      process.stdout.write(o.json ? `${JSON.stringify(summary)}\n` : `${formatGenerateSummary(summary)}\n`);
    },
  );

program
  .command("evaluate")
  .description(
    "Asks the running stack, through the gateway's Connect JSON API, the questions of a truth.json of generate, and reports precision@k of Recommendation and SimilarContent beside a random baseline.",
  )
  .requiredOption("--truth <file>", "truth.json written by generate")
  .option("--gateway <url>", "gateway", process.env.GATEWAY_URL ?? "http://127.0.0.1:8080")
  .option("--api-key <key>", "sent as x-api-key, for a gateway that requires keys (default: $GATEWAY_API_KEY)")
  .option("--k <n>", `size of the top k, 1..${MAX_LIMIT}`, positiveInt, 10)
  .option("--concurrency <n>", "requests in flight", positiveInt, 8)
  .option("--json", "print the report as JSON", false)
  .addHelpText(
    "after",
    `
Recommendation: for the first page of each planted path, precision@k = the share of the top k that
are later pages of that path, recall@k = the share of those later pages in the top k.
SimilarContent: for each user with a preferred topic and a click, the top k pages the user did not
click (asked with limit k + the pages they clicked, those left out), precision@k = the share of them
that are pages of the topic ("heldOut" in truth.json); "with clicked" scores the answer as given,
any page of the topic a hit. Every figure is a mean over the queries; "random" is its expectation
for pages drawn at random, "ideal" the best a ranking can reach (a path shorter than k + 1 pages
caps it). Load the workload first: content with --wait, then replay with --wait, and let profile
fold in the clicks (milliseconds).`,
  )
  .action(async (o: { truth: string; gateway: string; apiKey?: string; k: number; concurrency: number; json: boolean }) => {
    if (o.k > MAX_LIMIT) throw new Error(`--k must be at most ${MAX_LIMIT}`);
    const report = await evaluate({
      truth: readTruth(o.truth),
      gateway: connectJsonGateway(o.gateway, { apiKey: o.apiKey ?? process.env.GATEWAY_API_KEY }),
      gatewayUrl: o.gateway,
      k: o.k,
      concurrency: o.concurrency,
    });
    process.stdout.write(o.json ? `${JSON.stringify(report)}\n` : `${formatEvaluation(report)}\n`);
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`loadgen: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
