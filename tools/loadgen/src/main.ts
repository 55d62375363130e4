#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import { formatContentSummary, loadContent } from "./content.js";
import { formatSummary, replay } from "./replay.js";

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

const program = new Command("loadgen").description("Replays click files against the recommendation stack.");

program
  .command("replay")
  .description("Replays clicks (one {userid, url, event_time} JSON object a line) through ingest.")
  .argument("<file>", "clicks, one JSON object a line (.json or .json.gz)")
  .option("--rate <n>", "clicks per second; 0 = as fast as the system takes them", nonNegativeInt, 100)
  .option("--target <url>", "ingest service", process.env.INGEST_URL ?? "http://127.0.0.1:50051")
  .option("--covisit <url>", "covisit service, asked for progress by --wait", process.env.COVISIT_URL ?? "http://127.0.0.1:50052")
  .option("--wait", "return only when every click is visible in Recommendation", false)
  .option("--shift-time", "rewrite times to start now (gaps kept) and derive new ids", false)
  .option("--batch <n>", "clicks per ingest call", positiveInt, 500)
  .option("--concurrency <n>", "ingest calls in flight", positiveInt, 2)
  .option("--wait-timeout <ms>", "give up waiting after this long", positiveInt, 300_000)
  .option("--json", "print the summary as JSON", false)
  .action(async (file: string, o: { rate: number; target: string; covisit: string; wait: boolean; shiftTime: boolean; batch: number; concurrency: number; waitTimeout: number; json: boolean }) => {
    const progress = progressPrinter("clicks");
    const summary = await replay({
      file,
      rate: o.rate,
      target: o.target,
      covisit: o.covisit,
      wait: o.wait,
      shiftTime: o.shiftTime,
      batchSize: o.batch,
      concurrency: o.concurrency,
      waitTimeoutMs: o.waitTimeout,
      onProgress: progress.onProgress,
    });
    progress.finish(summary, formatSummary(summary), o.json);
  });

program
  .command("content")
  .description("Loads pages (one {id, url, title, text, _source_time} JSON object a line) through ingest.")
  .argument("<file>", "pages, one JSON object a line (.json or .json.gz)")
  .option("--rate <n>", "pages per second; 0 = as fast as the system takes them", nonNegativeInt, 50)
  .option("--target <url>", "ingest service", process.env.INGEST_URL ?? "http://127.0.0.1:50051")
  .option("--embedder <url>", "embedder service, asked for progress by --wait", process.env.EMBEDDER_URL ?? "http://127.0.0.1:50053")
  .option("--profile <url>", "profile service, asked for progress by --wait", process.env.PROFILE_URL ?? "http://127.0.0.1:50054")
  .option("--wait", "return only when every page is embedded and stored", false)
  .option("--batch <n>", "pages per ingest call", positiveInt, 100)
  .option("--concurrency <n>", "ingest calls in flight", positiveInt, 2)
  .option("--wait-timeout <ms>", "give up waiting after this long", positiveInt, 600_000)
  .option("--json", "print the summary as JSON", false)
  .action(async (file: string, o: { rate: number; target: string; embedder: string; profile: string; wait: boolean; batch: number; concurrency: number; waitTimeout: number; json: boolean }) => {
    const progress = progressPrinter("pages");
    const summary = await loadContent({
      file,
      rate: o.rate,
      target: o.target,
      embedder: o.embedder,
      profile: o.profile,
      wait: o.wait,
      batchSize: o.batch,
      concurrency: o.concurrency,
      waitTimeoutMs: o.waitTimeout,
      onProgress: progress.onProgress,
    });
    progress.finish(summary, formatContentSummary(summary), o.json);
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`loadgen: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
