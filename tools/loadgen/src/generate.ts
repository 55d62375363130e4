import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { inFormat, type ClickFormat } from "./click-formats.js";
import { truthJson, type Truth } from "./truth.js";
import { generateWorkload } from "./workload.js";
import { jsonLine } from "./workload-format.js";
import type { WorkloadParams } from "./workload-params.js";

export interface GenerateSummary {
  dir: string;
  files: { content: string; clickstream: string; truth: string };
  seed: number;
  pages: number;
  topics: number;
  users: number;
  preferringUsers: number;
  paths: number;
  clicks: number;
  pathClicks: number;
  browsingClicks: number;
  noiseClicks: number;
  firstClick: string;
  lastClick: string;
}

/** Writes content.json.gz, clickstream.json.gz (its lines in `format`) and truth.json into `dir` (created if missing). */
export function writeWorkload(dir: string, params: Partial<WorkloadParams>, format: ClickFormat = "ours"): GenerateSummary {
  const { pages, clicks, truth } = generateWorkload(params);
  mkdirSync(dir, { recursive: true });
  const files = { content: join(dir, "content.json.gz"), clickstream: join(dir, "clickstream.json.gz"), truth: join(dir, "truth.json") };
  writeFileSync(files.content, gzipLines(pages));
  writeFileSync(files.clickstream, gzipLines(inFormat(clicks, format, truth.params.seed)));
  writeFileSync(files.truth, truthJson(truth));
  return summarize(dir, files, truth, clicks);
}

function gzipLines(objects: object[]): Buffer {
  return gzipSync(objects.map((o) => `${jsonLine(o)}\n`).join(""), { level: 9 });
}

function summarize(dir: string, files: GenerateSummary["files"], truth: Truth, clicks: Array<{ event_time: string }>): GenerateSummary {
  return {
    dir,
    files,
    seed: truth.params.seed,
    pages: truth.counts.pages,
    topics: truth.topics.length,
    users: truth.counts.users,
    preferringUsers: truth.counts.preferringUsers,
    paths: truth.paths.length,
    clicks: truth.counts.clicks,
    pathClicks: truth.counts.pathClicks,
    browsingClicks: truth.counts.browsingClicks,
    noiseClicks: truth.counts.noiseClicks,
    firstClick: clicks[0]?.event_time ?? "",
    lastClick: clicks.at(-1)?.event_time ?? "",
  };
}

export function formatGenerateSummary(s: GenerateSummary): string {
  return [
    `wrote ${s.dir}:`,
    `pages=${s.pages}`,
    `topics=${s.topics}`,
    `users=${s.users}`,
    `preferring=${s.preferringUsers}`,
    `paths=${s.paths}`,
    `clicks=${s.clicks}`,
    `path_clicks=${s.pathClicks}`,
    `browsing_clicks=${s.browsingClicks}`,
    `noise_clicks=${s.noiseClicks}`,
    `from=${s.firstClick}`,
    `to=${s.lastClick}`,
  ].join(" ");
}
