import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/** The objects of a `.json` or `.json.gz` file with one JSON object a line. */
export function readJsonLinesGz<T>(path: string): T[] {
  const text = path.endsWith(".gz") ? gunzipSync(readFileSync(path)).toString("utf8") : readFileSync(path, "utf8");
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}
