import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildDefaultModel, CONTENT_FILE, DEFAULT_OUT_DIR } from "./build-default.js";
import { readPages } from "./corpus.js";

const { values } = parseArgs({
  options: {
    content: { type: "string", default: CONTENT_FILE },
    out: { type: "string", default: DEFAULT_OUT_DIR },
  },
});
const content = resolve(values.content);
const pages = await readPages(content);
const built = await buildDefaultModel({ pages, outDir: resolve(values.out), builtFrom: content });
console.log(`${built.name}: ${built.dimension}d from ${built.pages} pages in ${(built.millis / 1000).toFixed(1)} s → ${built.dir}`);
