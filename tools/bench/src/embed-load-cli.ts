#!/usr/bin/env node
// The Embed phase's client from a process of its own, as the latency phases' load (load-cli.ts) and the in-process anchor (the
// embedder's batching CLI) run: in the bench's own process, which holds every phase's data, the same client made 2,938 docs/s
// where a process of its own made 3,646-3,868 against the same embedder.
//   node dist/embed-load-cli.js BASE PAGES
// Embeds the first PAGES reference pages (title, newline, text) through Embed at BASE in calls of 16 texts, 8 in flight, so the
// server has texts waiting to batch and a call's cost is shared by its texts whatever the server's batching. Prints
// {docsPerSecond, model} as JSON.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import { lines, pagesFile, type Page } from "./reference-data.js";

const [base, pages] = process.argv.slice(2);
if (!base || !pages) throw new Error("usage: embed-load-cli.js BASE PAGES");
const texts = lines<Page>(pagesFile)
  .slice(0, Number(pages))
  .map((p) => `${p.title}\n${p.text}`);
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
process.stdout.write(`${JSON.stringify({ docsPerSecond: texts.length / ((performance.now() - t0) / 1000), model })}\n`);
