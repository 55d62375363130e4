import { readFileSync } from "node:fs";
import type { HttpRequest, HttpResponse } from "@recsys/server";

/** Where the document is served. */
export const OPENAPI_PATH = "/openapi.json";

/** GET /openapi.json: the document `pnpm openapi` generated from the protos (openapi.json beside dist/), read once. */
export function openApiRoute(file = new URL("../openapi.json", import.meta.url)) {
  const body = readFileSync(file);
  return (req: HttpRequest, res: HttpResponse): boolean => {
    if ((req.url ?? "").split("?")[0] !== OPENAPI_PATH || (req.method !== "GET" && req.method !== "HEAD")) return false;
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length, "cache-control": "no-cache" });
    if (req.method === "HEAD") res.end();
    else res.end(body);
    return true;
  };
}
