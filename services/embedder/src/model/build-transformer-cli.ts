// Writes the transformer-shaped test model (MiniLM-L6's shapes, seeded random weights) into models/transformer.
//   node dist/model/build-transformer-cli.js [--out DIR] [--seed N]
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { TRANSFORMER_OUT_DIR, TRANSFORMER_SEED, writeTransformerModel } from "./transformer-model.js";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: TRANSFORMER_OUT_DIR },
    seed: { type: "string", default: String(TRANSFORMER_SEED) },
  },
});
const seed = Number(values.seed);
if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
const built = await writeTransformerModel(resolve(values.out), { seed });
console.log(
  `${built.name}: ${(built.parameters / 1e6).toFixed(2)} M parameters, ${(built.bytes / 2 ** 20).toFixed(1)} MiB in ${(built.millis / 1000).toFixed(1)} s → ${built.dir}`,
);
