import type { ContentLoadOptions } from "@recsys/loadgen/content";
import type { ReplayOptions } from "@recsys/loadgen/replay";
import type { TestStack } from "./stack.js";

/** loadgen's replay of `file` into the stack as fast as it takes it, waiting until covisit applied it all. */
export function replayOptions(stack: TestStack, file: string): ReplayOptions {
  return {
    file,
    rate: 0,
    target: stack.url.ingest,
    covisit: stack.url.covisit,
    wait: true,
    shiftTime: false,
    batchSize: 500,
    concurrency: 2,
    waitTimeoutMs: 120_000,
  };
}

/** loadgen's load of a pages file into the stack as fast as it takes it, waiting until every page is stored. */
export function contentOptions(stack: TestStack, file: string): ContentLoadOptions {
  return {
    file,
    rate: 0,
    target: stack.url.ingest,
    embedder: stack.url.embedder,
    profile: stack.url.profile,
    wait: true,
    batchSize: 100,
    concurrency: 2,
    waitTimeoutMs: 300_000,
  };
}
