import type { Logger } from "@recsys/logging";
import type { HttpRequest, HttpResponse } from "@recsys/server";
import type { GraphqlServer } from "./graphql.js";

/** Largest GraphQL request body; the reference documents are a few hundred bytes. */
export const MAX_GRAPHQL_BODY_BYTES = 64 * 1024;

/**
 * POST (and GET) /graphql, and GET /graphiql when `graphiql` (its scripts served with the page, no
 * CDN), beside the RPCs on the gateway's port; for `startRpcServer({ http })`. Answers true for the
 * requests it takes.
 */
export function serveGraphql(yoga: GraphqlServer, logger: Logger, options: { graphiql: boolean }) {
  // GraphiQL's page carries its scripts, 9 MB of JavaScript: imported and rendered at its first request, so a gateway whose GraphiQL
  // nobody opens (off loopback it is off by default) never holds them. Held from startup, they were half the gateway's heap.
  let graphiql: Promise<string> | undefined;
  const graphiqlPage = () =>
    (graphiql ??= import("@graphql-yoga/render-graphiql").then((m) => m.renderGraphiQL({ endpoint: "/graphql", title: "recsys gateway" })));
  return (req: HttpRequest, res: HttpResponse): boolean => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/graphiql" && req.method === "GET" && options.graphiql) {
      graphiqlPage().then(
        (page) => {
          res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
          res.end(page);
        },
        (err: unknown) => {
          // Not cached: the next request tries again.
          graphiql = undefined;
          logger.warn({ err }, "GraphiQL's page failed to load");
          sendErrors(res, 500, "INTERNAL_SERVER_ERROR", "GraphiQL's page failed to load.");
        },
      );
      return true;
    }
    if (path !== "/graphql") return false;
    answer(yoga, req, res).catch((err: unknown) => {
      logger.warn({ err }, "graphql request failed");
      if (res.headersSent) res.destroy();
      else sendErrors(res, 500, "INTERNAL_SERVER_ERROR", "Unexpected error.");
    });
    return true;
  };
}

async function answer(yoga: GraphqlServer, req: HttpRequest, res: HttpResponse) {
  const body = await readBody(req, MAX_GRAPHQL_BODY_BYTES);
  if (body === undefined) {
    sendErrors(res, 413, "PAYLOAD_TOO_LARGE", `request body: must be at most ${MAX_GRAPHQL_BODY_BYTES} bytes`);
    return;
  }
  // yoga takes a body already read from `req.body`, as it does behind Express' body parsers.
  if (body.length > 0) Object.assign(req, { body });
  // HTTP/2's compatibility request is taken too: whatwg-node leaves out its pseudo-headers.
  type Listener = Parameters<GraphqlServer["requestListener"]>;
  await yoga.requestListener(req as Listener[0], res as Listener[1]);
}

/**
 * The whole body, or undefined as soon as it passes `max` bytes. The rest of a body that is too
 * large is read and dropped, so that the client gets its 413 instead of a reset connection.
 */
function readBody(req: HttpRequest, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      req.off("data", onData);
      req.resume();
      resolve(undefined);
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
    req.once("close", () => reject(new Error("request closed before its end")));
  });
}

function sendErrors(res: HttpResponse, status: number, code: string, message: string) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
  res.end(JSON.stringify({ errors: [{ message, extensions: { code, http: { status } } }] }));
}
