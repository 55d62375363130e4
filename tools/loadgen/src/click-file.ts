import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";

export interface FileClick {
  userid: string;
  url: string;
  event_time: string;
  event_id?: string;
}

/** Clicks of a `.json` or `.json.gz` file, one JSON object a line, in file order. */
export async function* readClickFile(path: string): AsyncGenerator<FileClick> {
  for await (const obj of readJsonLines(path)) {
    yield {
      userid: String(obj.userid ?? ""),
      url: String(obj.url ?? ""),
      event_time: String(obj.event_time ?? ""),
      ...(obj.event_id !== undefined ? { event_id: String(obj.event_id) } : {}),
    };
  }
}

/** The objects of a `.json` or `.json.gz` file with one JSON object a line, blank lines skipped. */
export async function* readJsonLines(path: string): AsyncGenerator<Record<string, unknown>> {
  const raw = createReadStream(path);
  const input = path.endsWith(".gz") ? raw.pipe(createGunzip()) : raw;
  let lineNo = 0;
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    lineNo++;
    if (line.trim() === "") continue;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`${path}:${lineNo}: not a JSON object`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new Error(`${path}:${lineNo}: not a JSON object`);
    yield obj;
  }
}

/**
 * New traffic from an old file: times move so that the latest click is now, gaps kept (ingest refuses times ahead of its clock),
 * and the file's ids are dropped so that ingest derives fresh ones from the new times.
 */
export function shiftTime(latest: number, now: number) {
  return (c: FileClick): FileClick => {
    const t = Date.parse(c.event_time);
    if (!Number.isFinite(t)) return { userid: c.userid, url: c.url, event_time: c.event_time };
    return { userid: c.userid, url: c.url, event_time: new Date(t - latest + now).toISOString() };
  };
}

/** The latest event time in a click file (ms), for `shiftTime`; undefined when no time parses. */
export async function latestEventTime(path: string): Promise<number | undefined> {
  let latest: number | undefined;
  for await (const c of readClickFile(path)) {
    const t = Date.parse(c.event_time);
    if (Number.isFinite(t) && (latest === undefined || t > latest)) latest = t;
  }
  return latest;
}
