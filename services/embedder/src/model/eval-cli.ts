import { parseArgs } from "node:util";
import { CONTENT_FILE } from "./build-default.js";
import { readPages } from "./corpus.js";
import { evaluate, formatReport } from "./eval.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    content: { type: "string", default: CONTENT_FILE },
    json: { type: "boolean", default: false },
    threads: { type: "string", default: "2" },
  },
});
const pages = await readPages(values.content);
const report = await evaluate({ pages, modelDir: values.model, intraOpThreads: Number(values.threads) });
console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
