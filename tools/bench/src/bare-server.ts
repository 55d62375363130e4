#!/usr/bin/env node
// The limit beside the gateway: a bare node:http server answering Recommendation with covisit's own store (recommend.lua through
// ioredis) and SimilarContent with profile's own statement (pg), and nothing else: no Connect, no validation, no access checks, no
// coalescing, no second hop. Part of the bench's tooling, never a service. It answers the Connect JSON routes' paths and bodies,
// so one load generator drives it and the gateway alike, and prints `listening <port>` when ready.
import { createServer, type IncomingMessage } from "node:http";
import { connectRedis, CovisitStore } from "@recsys/covisit-store";
import pg from "pg";
import { similarContentMany } from "@recsys/profile/reads";
import { schemaFor } from "@recsys/profile/pool";
import { machine } from "./machine.js";

const env = process.env;
const namespace = env.RECSYS_NAMESPACE ?? "";
const redis = connectRedis(machine.redis, {}, machine.redisCluster);
const shards = Number(env.COVISIT_SHARDS ?? 1);
const store = new CovisitStore(redis, namespace, 0, undefined, undefined, undefined, undefined, "counts", { shards });
// As profile's pool: its schema, then public for the vector type; as many connections as profile keeps by default.
const pool = new pg.Pool({
  connectionString: machine.postgres,
  max: Number(env.PG_POOL_MAX ?? 10),
  options: `-c search_path=${schemaFor(namespace)},public`,
});

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
}

const routes: Record<string, (b: Record<string, unknown>) => Promise<unknown>> = {
  "/recsys.gateway.v1.GatewayService/Recommendation": async (b) => ({
    items: (await store.coVisitsAfter(String(b.url), Number(b.limit ?? 10), String(b.userid ?? ""))).map((c) => ({
      recommendation: c.recommendation,
      frequency: String(c.frequency),
    })),
  }),
  "/recsys.gateway.v1.GatewayService/SimilarContent": async (b) => ({
    items: (await similarContentMany(pool, [{ userid: String(b.userid), limit: Number(b.limit ?? 10), includeSeen: false }]))[0],
  }),
};

const server = createServer((req, res) => {
  const route = routes[req.url ?? ""];
  if (!route || req.method !== "POST") {
    res.writeHead(404).end();
    return;
  }
  body(req)
    .then(route)
    .then(
      (answer) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer)),
      (err: unknown) => res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ message: String(err) })),
    );
});
server.keepAliveTimeout = 60_000;
server.listen(Number(env.PORT ?? 0), "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === "object" && address ? address.port : 0}\n`);
});
const stop = () => {
  server.close();
  redis.disconnect();
  void pool.end();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
