import { readFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";

/** One reference page as content.json.gz holds it. */
export interface Page {
  id: string;
  url: string;
  title: string;
  text: string;
}

/** Reads JSON-lines pages, gzip or not, in file order (the eval's even/odd split depends on it). */
export async function readPages(file: string): Promise<Page[]> {
  const raw = await readFile(file);
  const body = file.endsWith(".gz") ? gunzipSync(raw) : raw;
  return body
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line, i) => {
      const p = JSON.parse(line) as Partial<Page>;
      if (typeof p.url !== "string" || typeof p.text !== "string") throw new Error(`${file}:${i + 1}: a page needs url and text`);
      return { id: String(p.id ?? i), url: p.url, title: p.title ?? "", text: p.text };
    });
}
