import type { BEHAVIOUR, WorkloadParams } from "./workload-params.js";

// truth.json: what the generator planted (topics, paths, each user's preference and held-out pages),
// for the evaluation to score recommendations against.

export const TRUTH_FORMAT = "recsys-synthetic-truth/1";

export interface PlantedPath {
  topic: string;
  /** In the order followers click them, each within the pathSpanSeconds of the first. */
  pages: string[];
  followers: string[];
}

export interface UserTruth {
  userid: string;
  /** The preferred topic; null for users who browse every page alike. */
  topic: string | null;
  /** Every page the user clicked. */
  clicked: string[];
  /** Pages of the preferred topic the user never clicked. */
  heldOut: string[];
}

export interface Truth {
  format: typeof TRUTH_FORMAT;
  params: WorkloadParams;
  behaviour: typeof BEHAVIOUR;
  counts: { pages: number; users: number; preferringUsers: number; clicks: number; pathClicks: number; browsingClicks: number; noiseClicks: number };
  topics: Array<{ name: string; pages: string[] }>;
  paths: PlantedPath[];
  users: UserTruth[];
}

/** truth.json: one top-level key a line, and each path, topic and user on a line of its own. */
export function truthJson(truth: Truth): string {
  const entries = Object.entries(truth).map(([k, v]) => {
    const value = Array.isArray(v) && v.length > 0 ? `[\n${v.map((item) => `    ${JSON.stringify(item)}`).join(",\n")}\n  ]` : JSON.stringify(v);
    return `  ${JSON.stringify(k)}: ${value}`;
  });
  return `{\n${entries.join(",\n")}\n}\n`;
}
