#!/usr/bin/env node
// The main job (README.md, Quick start): the stack, the reference pages and clicks, then the gateway's answers.
//   node scripts/demo.mjs [--rate N] [--file PATH] [--pages PATH]
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
    pages: { type: "string", default: resolve(root, "../shared/data/content.json.gz") },
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

async function graphql(query, variables) {
  const res = await fetch(`${gateway}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const json = await res.json();
  if (json.errors) throw new Error(`GraphQL: ${json.errors.map((e) => e.message).join("; ")}`);
  return json.data;
}

async function eventually(what, probe) {
  for (let i = 0; i < 300; i++) {
    const value = await probe();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not visible after 30 s`);
}

function readClicks(file) {
  return gunzipSync(readFileSync(file))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/** The most clicked pages among `clicks`: the ones with the most to show. */
function busiestUrls(clicks, n) {
  const counts = new Map();
  for (const { url } of clicks) counts.set(url, (counts.get(url) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .map(([url]) => url);
}

run(process.execPath, [join(root, "scripts/stack.mjs"), "up"]);
console.error("demo: loading the pages (embedded, then stored with their vectors)");
run(process.execPath, [join(root, "tools/loadgen/dist/main.js"), "content", args.pages, "--rate", args.rate, "--wait"]);
console.error("demo: replaying the clicks");
run(process.execPath, [join(root, "tools/loadgen/dist/main.js"), "replay", args.file, "--rate", args.rate, "--wait"]);

const clicks = readClicks(args.file);
for (const url of busiestUrls(clicks, 3)) {
  const { items = [] } = await call("Recommendation", { url, limit: 5 });
  console.log(`\nPeople who visit ${decodeURIComponent(url)} next visit:`);
  for (const it of items) console.log(`  ${String(it.frequency).padStart(4)}  ${decodeURIComponent(it.recommendation)}`);
}
const reader = "f5e9c688-408d-b54f-94aa-493df43dac8c";
const { items: similar = [] } = await call("SimilarContent", { userid: reader, limit: 5 });
const mostRead = busiestUrls(
  clicks.filter((c) => c.userid === reader),
  3,
).map((u) => decodeURIComponent(u.replace(/^.*\/wiki\//, "")));
console.log(`\nUser ${reader} read mostly ${mostRead.join(", ")}; the pages closest in meaning:`);
for (const it of similar) console.log(`  ${it.similarity.toFixed(3)}  ${it.title}  (${decodeURIComponent(it.url)})`);

const fan = "1234";
const interest = "I want to learn more about Apache Flink and how to use it for real-time stream processing.";
await graphql(`mutation AddInterest($interest: AddInterest!) { AddInterest(interest: $interest) { _source_time } }`, {
  interest: { userid: fan, text: interest },
});
const recommended = await eventually("the stated interest", async () => {
  const { RecommendedEvents } = await graphql(`{ RecommendedEvents(userid: "${fan}", limit: 5) { id title score } }`);
  return RecommendedEvents.length > 0 && RecommendedEvents;
});
console.log(`\nUser ${fan} said: "${interest}" (GraphQL AddInterest); RecommendedEvents:`);
for (const e of recommended) console.log(`  ${e.score.toFixed(3)}  ${e.title}  (id ${e.id})`);
await graphql(`mutation AddLike($liked: LikedInput!) { Likes(liked: $liked) { _source_time } }`, { liked: { userid: fan, eventId: 42672986, liked: true } });
const liked = await eventually("the like", async () => {
  const { EventsLiked } = await graphql(`{ EventsLiked(userid: "${fan}") { id title likeCount } }`);
  return EventsLiked.length > 0 && EventsLiked;
});
console.log(`\nUser ${fan} liked: ${liked.map((e) => `${e.title} (id ${e.id}, ${e.likeCount} like${e.likeCount === 1 ? "" : "s"})`).join(", ")}`);
const { PersonalizedEventSearch: found } = await graphql(`{ PersonalizedEventSearch(query: "kafka", userid: "${fan}") { id title score } }`);
console.log(`PersonalizedEventSearch "kafka" for ${fan}:`);
for (const e of found) console.log(`  ${e.score.toFixed(3)}  ${e.title}  (id ${e.id})`);

console.log(`\nAsk yourself:\n  curl -s -X POST -H 'content-type: application/json' \\\n    -d '{"url": "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement", "limit": 5}' \\\n    ${gateway}/recsys.gateway.v1.GatewayService/Recommendation
  curl -s -X POST -H 'content-type: application/json' \\\n    -d '{"userid": "${reader}"}' \\\n    ${gateway}/recsys.gateway.v1.GatewayService/SimilarContent
  curl -s -X POST -H 'content-type: application/json' \\\n    -d '{"query": "{ RecommendedEvents(userid: \\"${fan}\\") { id title score } }"}' \\\n    ${gateway}/graphql
  or open ${gateway}/graphiql in a browser; ${gateway}/ is the live dashboard.`);
console.log("The stack keeps running; stop it with: pnpm stack:down");
