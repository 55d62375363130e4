/** One line of the Prometheus text format: `name{label="value",…} value [timestamp]`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

// The labels run to the last `}`: after them come only the value and a timestamp.
const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

/**
 * The samples of a scrape, in order. Comments, blank lines and lines that are not samples are
 * skipped: a dashboard shows what it can read rather than nothing.
 */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) continue;
    const labels = m[2] === undefined ? {} : parseLabels(m[2]);
    const value = parseValue(m[3]!);
    if (labels === undefined || value === undefined) continue;
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

function parseLabels(text: string): Record<string, string> | undefined {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (!m) return text.slice(LABEL.lastIndex).trim() === "" ? labels : undefined;
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
  }
  return labels;
}

function parseValue(text: string): number | undefined {
  switch (text) {
    case "+Inf":
    case "Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
    case "NaN":
      return NaN;
  }
  const value = Number(text);
  return Number.isNaN(value) ? undefined : value;
}

/** The sum of the samples named `name` whose labels pass `where`; undefined when there are none. */
export function total(samples: Sample[], name: string, where: (labels: Record<string, string>) => boolean = () => true): number | undefined {
  let sum: number | undefined;
  for (const s of samples) if (s.name === name && where(s.labels)) sum = (sum ?? 0) + s.value;
  return sum;
}
