import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";

export interface FileClick {
  userid: string;
  url: string;
  event_time: string;
  event_id?: string;
  event?: string;
  properties?: Record<string, string | number>;
}

/** Where a click of the AWS format, which names a product and no page, lands: `{product_id}` is replaced. */
export const DEFAULT_PRODUCT_URL = "https://shop.example/products/{product_id}";

/** A time as the reference formats write it: RFC 3339, or epoch seconds or milliseconds. */
function timeOf(value: unknown): string {
  if (typeof value === "number" && Number.isFinite(value)) return new Date(value < 1e12 ? value * 1000 : value).toISOString();
  return String(value ?? "");
}

const scalar = (v: unknown): v is string | number => typeof v === "string" || (typeof v === "number" && Number.isFinite(v));

/** The scalar fields of `obj` but `except`, as properties; nothing when there are none. */
function propertiesOf(obj: Record<string, unknown>, except: string[]): Record<string, string | number> | undefined {
  const entries = Object.entries(obj).filter(([k, v]) => !except.includes(k) && scalar(v)) as Array<[string, string | number]>;
  return entries.length ? Object.fromEntries(entries) : undefined;
}

/**
 * One line of a click file in any of the three formats: ours ({userid, url, event_time, event_id?, event?, properties?});
 * the Redpanda/Decodable generator's ({timestamp, event, user_id, url, site_id, on_site_seconds, viewed_percent, …}: the
 * fields besides these four become properties); the AWS pipeline's ({timestamp, user_id, event_name, click_id, user_ip,
 * additional_data: {product_id, price, …}}: click_id is the event id, user_ip and additional_data's fields properties,
 * the url additional_data.url or `productUrl` with the product_id).
 */
export function fileClickOf(obj: Record<string, unknown>, productUrl = DEFAULT_PRODUCT_URL): FileClick {
  if (!("user_id" in obj)) {
    const properties = typeof obj.properties === "object" && obj.properties !== null ? propertiesOf(obj.properties as Record<string, unknown>, []) : undefined;
    return {
      userid: String(obj.userid ?? ""),
      url: String(obj.url ?? ""),
      event_time: String(obj.event_time ?? ""),
      ...(obj.event_id !== undefined ? { event_id: String(obj.event_id) } : {}),
      ...(obj.event !== undefined ? { event: String(obj.event) } : {}),
      ...(properties ? { properties } : {}),
    };
  }
  if ("event_name" in obj) {
    const extra = typeof obj.additional_data === "object" && obj.additional_data !== null ? (obj.additional_data as Record<string, unknown>) : {};
    const product = extra.product_id === undefined ? "" : String(extra.product_id);
    const properties = { ...propertiesOf(extra, ["url"]), ...propertiesOf(obj, ["timestamp", "user_id", "event_name", "click_id", "additional_data"]) };
    return {
      userid: String(obj.user_id ?? ""),
      url: typeof extra.url === "string" ? extra.url : product ? productUrl.replace("{product_id}", encodeURIComponent(product)) : "",
      event_time: timeOf(obj.timestamp),
      ...(obj.click_id !== undefined ? { event_id: String(obj.click_id) } : {}),
      event: String(obj.event_name),
      ...(Object.keys(properties).length ? { properties } : {}),
    };
  }
  const properties = propertiesOf(obj, ["timestamp", "user_id", "event", "url"]);
  return {
    userid: String(obj.user_id ?? ""),
    url: String(obj.url ?? ""),
    event_time: timeOf(obj.timestamp),
    ...(obj.event !== undefined ? { event: String(obj.event) } : {}),
    ...(properties ? { properties } : {}),
  };
}

/** Clicks of a `.json` or `.json.gz` file, one JSON object a line in any format `fileClickOf` reads, in file order. */
export async function* readClickFile(path: string, productUrl = DEFAULT_PRODUCT_URL): AsyncGenerator<FileClick> {
  for await (const obj of readJsonLines(path)) yield fileClickOf(obj, productUrl);
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
  return ({ event_id: _, ...c }: FileClick): FileClick => {
    const t = Date.parse(c.event_time);
    return Number.isFinite(t) ? { ...c, event_time: new Date(t - latest + now).toISOString() } : c;
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
