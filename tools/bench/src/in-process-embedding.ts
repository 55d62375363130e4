import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { root } from "./reference-data.js";

// The embedder's own batching CLI (services/embedder/src/batching-cli.ts) as the bench's in-process anchor: docs/s of the reference
// pages through the same queue and session as the service, without gRPC, at max batch 1 and at the service's batch.

const embedder = join(root, "services/embedder");
/** The model the stack's embedder loads when nothing is set (MiniLM's weights are not on this machine). */
export const defaultModelDir = process.env.EMBEDDER_MODEL_DIR ?? join(embedder, "models/default");
/** Built by `pnpm build:model:transformer`; the bench builds it when missing (about 3 s, 86 MiB, git-ignored). */
export const transformerModelDir = join(embedder, "models/transformer");

export interface InProcessBatching {
  model: string;
  texts: "pages" | "titles";
  pages: number;
  batch1: { docsPerSecond: number; paddingShare: number };
  batched: { maxBatch: number; docsPerSecond: number; batches: number; paddingShare: number };
  speedup: number;
  /** The most `speedup` can be here: the best of the ceiling's passes over batch 1 through the queue. */
  speedupBound: number;
  /** The most batching can give this model here (the embedder's batching-ceiling.ts). */
  ceiling: {
    texts: number;
    tokensP50: number;
    passes: Array<{ batch: number; docsPerSecond: number }>;
    best: { batch: number; docsPerSecond: number };
    ceiling: number;
  };
}

/**
 * Runs `node ARGS` in a process of its own; resolves with its stdout once it exited 0. `quiet` keeps its stderr back (a progress
 * printer's, say) and tells the end of it only if the process fails.
 */
export function node(args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", opts.quiet ? "pipe" : "inherit"] });
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (err = (err + chunk).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`node ${args.join(" ")} exited ${code}${err ? `: ${err}` : ""}`))));
  });
}

export async function ensureTransformerModel(): Promise<string> {
  if (!existsSync(join(transformerModelDir, "onnx/model_quantized.onnx"))) {
    await node([join(embedder, "dist/model/build-transformer-cli.js"), "--out", transformerModelDir]);
  }
  return transformerModelDir;
}

/**
 * The first `pages` reference pages through the batching queue in a process of its own: as the service embeds a page (title, newline,
 * text), or their titles alone (as short as stated interests).
 */
export async function inProcessBatching(modelDir: string, pages: number, texts: "pages" | "titles" = "pages"): Promise<InProcessBatching> {
  const out = await node([join(embedder, "dist/batching-cli.js"), "--model", modelDir, "--pages", String(pages), "--texts", texts]);
  return JSON.parse(out.trim().split("\n").pop()!) as InProcessBatching;
}
