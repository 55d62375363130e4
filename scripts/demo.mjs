#!/usr/bin/env node
// The main job: start the stack, replay the reference clickstream, then ask the gateway.
//   node scripts/demo.mjs [--rate N] [--file PATH]
// Replaying again is safe: every click keeps its event id, so the counts do not change.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "0" },
    file: { type: "string", default: resolve(root, "../shared/data/clickstream.json.gz") },
  },
});
const gateway = process.env.GATEWAY_URL ?? `http://127.0.0.1:${process.env.GATEWAY_PORT ?? 8080}`;

function run(cmd, argv) {
  execFileSync(cmd, argv, { cwd: root, stdio: "inherit" });
}

async function call(method, body) {
  const res = await fetch(`${gateway}/recsys.gateway.v1.GatewayService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method}: ${json.code}: ${json.message}`);
  return json;
}

/** The most clicked pages of the file: the ones with the most to show. */
function busiestUrls(file, n) {
  const counts = new Map();
  for (const line of gunzipSync(readFileSync(file)).toString("utf8").split("\n")) {
    if (!line.trim()) continue;
    const { url } = JSON.parse(line);
    counts.set(url, (counts.get(url) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n).map(([url]) => url);
}

run(process.execPath, [join(root, "scripts/stack.mjs"), "up"]);
run(process.execPath, [join(root, "tools/loadgen/dist/main.js"), "replay", args.file, "--rate", args.rate, "--wait"]);

for (const url of busiestUrls(args.file, 3)) {
  const { items = [] } = await call("Recommendation", { url, limit: 5 });
  console.log(`\nPeople who visit ${decodeURIComponent(url)} next visit:`);
  for (const it of items) console.log(`  ${String(it.frequency).padStart(4)}  ${decodeURIComponent(it.recommendation)}`);
}
console.log(`\nAsk yourself:\n  curl -s -X POST -H 'content-type: application/json' \\\n    -d '{"url": "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement", "limit": 5}' \\\n    ${gateway}/recsys.gateway.v1.GatewayService/Recommendation`);
console.log("The stack keeps running; stop it with: pnpm stack:down");
