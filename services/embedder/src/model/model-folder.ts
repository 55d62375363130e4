import { mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { MODEL_FILE, type ModelManifest } from "./text-model.js";

/** The tokenizer half of a sentence-transformers folder; tokenizer.json is the only one required. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json"] as const;

/** Writes a model folder laid out like all-MiniLM-L6-v2: tokenizer files, onnx/model_quantized.onnx, model.json. */
export async function writeModelFolder(outDir: string, tokenizerDir: string, onnx: Uint8Array, manifest: ModelManifest): Promise<void> {
  if (!existsSync(join(tokenizerDir, "tokenizer.json"))) throw new Error(`${tokenizerDir} has no tokenizer.json`);
  const modelPath = join(outDir, MODEL_FILE);
  await mkdir(dirname(modelPath), { recursive: true });
  for (const file of TOKENIZER_FILES) {
    // Read and write rather than copy: the shared originals are read-only and a copy keeps their mode.
    if (existsSync(join(tokenizerDir, file))) await writeFile(join(outDir, file), await readFile(join(tokenizerDir, file)));
  }
  await writeFile(modelPath, onnx);
  await writeFile(join(outDir, "model.json"), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** Rows an embedding table needs: one past the largest id in tokenizer.json's vocabulary and added tokens. */
export async function vocabularySize(tokenizerDir: string): Promise<number> {
  const json = JSON.parse(await readFile(join(tokenizerDir, "tokenizer.json"), "utf8")) as {
    model?: { vocab?: Record<string, number> | [string, number][] };
    added_tokens?: { id: number }[];
  };
  const vocab = json.model?.vocab;
  const ids = Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab ?? {});
  for (const t of json.added_tokens ?? []) ids.push(t.id);
  if (ids.length === 0) throw new Error(`${tokenizerDir}/tokenizer.json has no vocabulary`);
  return ids.reduce((a, b) => Math.max(a, b), 0) + 1;
}
