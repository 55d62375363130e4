import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const MODEL_FILE = "onnx/model_quantized.onnx";
/** Where `pnpm build:model` writes the default model. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL("../models/default", import.meta.url));

const usable = (dir: string) => existsSync(join(dir, "tokenizer.json")) && existsSync(join(dir, MODEL_FILE));

/**
 * The model folder to load: EMBEDDER_MODEL_DIR when set (it must be usable), else all-MiniLM-L6-v2
 * when its weights are present, else the default model built from the reference pages.
 */
export function chooseModelDir(explicit: string | undefined, miniLmDir: string, defaultDir = DEFAULT_MODEL_DIR): string {
  if (explicit) {
    if (!usable(explicit)) throw new Error(`EMBEDDER_MODEL_DIR=${explicit} needs tokenizer.json and ${MODEL_FILE}`);
    return explicit;
  }
  if (usable(miniLmDir)) return miniLmDir;
  if (usable(defaultDir)) return defaultDir;
  throw new Error(`no model: ${miniLmDir} has no weights (${MODEL_FILE}) and the default model is not built; run pnpm build:model`);
}
