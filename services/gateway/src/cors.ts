import { cors as connectCors } from "@connectrpc/connect";
import type { HttpRequest, HttpResponse } from "@recsys/server";
import corsMiddleware from "cors";
import { API_KEY_HEADER } from "./auth.js";
import { CSRF_HEADER } from "./graphql.js";

/** `https://app.example.com,https://admin.example.com` → the origins; each must be an origin, nothing more. */
export function parseOrigins(spec: string): string[] {
  return spec
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean)
    .map((origin) => {
      let parsed: URL;
      try {
        parsed = new URL(origin);
      } catch {
        throw new Error(`GATEWAY_CORS_ORIGINS: "${origin}" is not a URL`);
      }
      if (parsed.origin !== origin) throw new Error(`GATEWAY_CORS_ORIGINS: "${origin}" must be an origin (scheme://host[:port]), as ${parsed.origin}`);
      return origin;
    });
}

/**
 * Cross-origin calls from the listed origins only (none: browsers on other sites cannot read any
 * answer). Preflights are answered here; other requests get the headers and go on. For every route
 * alike: Connect RPCs, GraphQL and the dashboard.
 */
export function corsFor(origins: string[]): (req: HttpRequest, res: HttpResponse) => boolean {
  if (origins.length === 0) return () => false;
  const middleware = corsMiddleware({
    origin: origins,
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, API_KEY_HEADER, "authorization", CSRF_HEADER],
    exposedHeaders: [...connectCors.exposedHeaders],
    maxAge: 7200,
  });
  return (req, res) => {
    let next = false;
    // With a fixed list of origins the middleware decides at once: it either answers a preflight or calls next.
    middleware(req as Parameters<typeof middleware>[0], res as Parameters<typeof middleware>[1], () => {
      next = true;
    });
    return !next;
  };
}
