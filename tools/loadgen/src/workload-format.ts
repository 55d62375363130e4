// Pages and clicks as the reference files write them, so that every tool reads a generated workload
// as it reads the reference one.

export const URL_BASE = "https://synthetic.example";

/** A page as in the reference content.json.gz. */
export interface SyntheticPage {
  id: string;
  url: string;
  title: string;
  text: string;
  _source_time: string;
}

/** How the reader reached the page: from outside, by a link on the page before, or by a search. */
export type ClickEventType = "landing" | "link" | "search";

/** A click as in the reference clickstream.json.gz, with what an analytics tag would add. */
export interface SyntheticClick {
  userid: string;
  url: string;
  event_time: string;
  event_type: ClickEventType;
  seconds_on_page: number;
  viewed_percent: number;
}

/** RFC 3339 in UTC, without milliseconds when there are none (as the reference files write times). */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

/** One object a line, spaced as the reference files are (`{"key": "value", ...}`). */
export function jsonLine(o: object): string {
  return `{${Object.entries(o)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(", ")}}`;
}
