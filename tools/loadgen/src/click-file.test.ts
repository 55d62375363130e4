import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { fileClickOf, latestEventTime, readClickFile, shiftTime, type FileClick } from "./click-file.js";

const dir = mkdtempSync(join(tmpdir(), "click-file-"));
const text = [
  '{"userid": "u1", "url": "https://e.org/a", "event_time": "2024-01-02T00:00:00Z"}',
  "",
  '{"userid": "u2", "url": "https://e.org/b", "event_time": "2024-01-02T00:01:30Z", "event_id": "x-1"}',
].join("\r\n");

async function all(path: string): Promise<FileClick[]> {
  const out: FileClick[] = [];
  for await (const c of readClickFile(path)) out.push(c);
  return out;
}

describe("readClickFile", () => {
  const expected = [
    { userid: "u1", url: "https://e.org/a", event_time: "2024-01-02T00:00:00Z" },
    { userid: "u2", url: "https://e.org/b", event_time: "2024-01-02T00:01:30Z", event_id: "x-1" },
  ];

  it("reads plain and gzipped files alike, skipping blank lines", async () => {
    writeFileSync(join(dir, "c.json"), text);
    writeFileSync(join(dir, "c.json.gz"), gzipSync(text));
    expect(await all(join(dir, "c.json"))).toEqual(expected);
    expect(await all(join(dir, "c.json.gz"))).toEqual(expected);
  });

  it("names the file and line of a line that is not JSON", async () => {
    writeFileSync(join(dir, "bad.json"), `${text}\n{"userid": "u3",\n`);
    await expect(all(join(dir, "bad.json"))).rejects.toThrow(`${join(dir, "bad.json")}:4: not a JSON object`);
  });
});

describe("the reference systems' formats", () => {
  it("reads the Redpanda/Decodable generator's events: user_id, timestamp, event, and the rest as properties", () => {
    const line = {
      timestamp: "2023-06-01T10:00:00.000Z",
      event: "add_to_cart",
      user_id: "u-9",
      site_id: "site-3",
      url: "https://shop.example/p/1",
      on_site_seconds: 57,
      viewed_percent: 80,
    };
    expect(fileClickOf(line)).toEqual({
      userid: "u-9",
      url: "https://shop.example/p/1",
      event_time: "2023-06-01T10:00:00.000Z",
      event: "add_to_cart",
      properties: { site_id: "site-3", on_site_seconds: 57, viewed_percent: 80 },
    });
  });

  it("reads the AWS pipeline's events: event_name, click_id as the id, additional_data and user_ip as properties, the product's url", () => {
    const line = {
      timestamp: 1685613600,
      user_id: "u-1",
      event_name: "AddToCart",
      click_id: "c-42",
      user_ip: "10.0.0.1",
      additional_data: { product_id: "p 7", price: 19.99, percent_viewed: 35, tags: ["x"] },
    };
    expect(fileClickOf(line)).toEqual({
      userid: "u-1",
      url: "https://shop.example/products/p%207",
      event_time: "2023-06-01T10:00:00.000Z",
      event_id: "c-42",
      event: "AddToCart",
      properties: { product_id: "p 7", price: 19.99, percent_viewed: 35, user_ip: "10.0.0.1" },
    });
    expect(fileClickOf({ ...line, timestamp: 1685613600123 }, "https://e.org/{product_id}").url).toBe("https://e.org/p%207");
  });

  it("reads ours with an event type and properties", () => {
    expect(fileClickOf({ userid: "u", url: "https://e.org/a", event_time: "2024-01-02T00:00:00Z", event: "login", properties: { n: 1, bad: null } })).toEqual({
      userid: "u",
      url: "https://e.org/a",
      event_time: "2024-01-02T00:00:00Z",
      event: "login",
      properties: { n: 1 },
    });
  });
});

describe("shiftTime", () => {
  it("moves the latest click to now, keeps the gaps, and drops the file's ids", () => {
    const now = Date.parse("2026-05-01T12:00:00.250Z");
    const shift = shiftTime(Date.parse("2024-01-02T00:01:30Z"), now);
    expect(shift({ userid: "u1", url: "https://e.org/a", event_time: "2024-01-02T00:00:00Z" }).event_time).toBe("2026-05-01T11:58:30.250Z");
    expect(shift({ userid: "u2", url: "https://e.org/b", event_time: "2024-01-02T00:01:30Z", event_id: "x-1" })).toEqual({
      userid: "u2",
      url: "https://e.org/b",
      event_time: "2026-05-01T12:00:00.250Z",
    });
  });

  it("takes the latest time of a file whatever its order, passing over times that do not parse", async () => {
    writeFileSync(
      join(dir, "times.json"),
      ["2024-01-02T00:05:00Z", "2024-01-02T00:09:00Z", "soon", "2024-01-02T00:01:00Z"]
        .map((t) => JSON.stringify({ userid: "u", url: "https://e.org/a", event_time: t }))
        .join("\n"),
    );
    expect(await latestEventTime(join(dir, "times.json"))).toBe(Date.parse("2024-01-02T00:09:00Z"));
    writeFileSync(join(dir, "no-times.json"), JSON.stringify({ userid: "u", url: "https://e.org/a" }));
    expect(await latestEventTime(join(dir, "no-times.json"))).toBeUndefined();
  });
});
