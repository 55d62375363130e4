import { readFileSync } from "node:fs";
import { COVISIT_WINDOW_MS, DEFAULT_ALLOWED_LATENESS_MS } from "@recsys/validation";
import { describe, expect, it } from "vitest";
import { applyClicksScript, STORAGE_VERSION, storageVersionStated } from "./redis-store.js";

// Facts the code holds as constants and the docs and the script restate: a change of one fails here.
const read = (path: string) => readFileSync(new URL(path, import.meta.url), "utf8");
const readme = read("../README.md");
const windowDocs = {
  "README.md": read("../../../README.md"),
  "services/covisit/README.md": readme,
  "services/ingest/README.md": read("../../ingest/README.md"),
  "proto/recsys/covisit/v1/covisit.proto": read("../../../proto/recsys/covisit/v1/covisit.proto"),
};

describe("the storage version", () => {
  it("is the one covisit.lua's header states, or no store loads the script", () => {
    expect(storageVersionStated(read("../../../packages/covisit-store/src/covisit.lua").split("\n", 1)[0]!)).toBe(STORAGE_VERSION);
    expect(() => applyClicksScript()).not.toThrow();
  });

  it("is the one the README names the marker after and states", () => {
    expect(readme).toContain(`counts-from-first-click:v${STORAGE_VERSION}\``);
    expect([...readme.matchAll(/storage version (\d+)/g)].map((m) => Number(m[1]))).toEqual([STORAGE_VERSION]);
  });
});

describe("the co-visit window and the default lateness", () => {
  it("are what the docs say (every 'within N minutes')", () => {
    for (const [path, text] of Object.entries(windowDocs)) {
      const stated = [...text.matchAll(/within\s+(\d+)\s+minutes/g)].map((m) => Number(m[1]) * 60_000);
      expect(stated.length, path).toBeGreaterThan(0);
      expect(stated, path).toEqual(stated.map(() => COVISIT_WINDOW_MS));
    }
  });

  it("the README's ALLOWED_LATENESS_MS default is the code's", () => {
    expect(/\| `ALLOWED_LATENESS_MS` \| (\d+) \|/.exec(readme)?.[1]).toBe(String(DEFAULT_ALLOWED_LATENESS_MS));
  });
});
