import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

// The reference workload the bench replays, read from the shared data folder beside the repository.

export const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const data = join(root, "../shared/data");
export const clicksFile = join(data, "clickstream.json.gz");
export const pagesFile = join(data, "content.json.gz");

export interface Click {
  userid: string;
  url: string;
  event_time: string;
}
export interface Page {
  url: string;
  title: string;
  text: string;
}
export const lines = <T>(file: string): T[] =>
  gunzipSync(readFileSync(file))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
