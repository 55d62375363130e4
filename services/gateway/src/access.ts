import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import type { Logger } from "@recsys/logging";
import { PEER_HEADER } from "@recsys/server";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";

export type Scope = "read" | "write";

/** The gateway's RPCs by method name ("likes"), the keys of `GatewayApi`. */
export type Rpc = keyof (typeof GatewayService)["method"];

/** Who is calling: the API key sent in `x-api-key`, if any, and the peer address. */
export interface Caller {
  apiKey?: string;
  address: string;
}

export const API_KEY_HEADER = "x-api-key";

/**
 * The scope each RPC needs; "write" ones are also rate-limited. A Record so that a new RPC without
 * a scope does not build. The dashboard's stream only reads.
 */
const SCOPES: Record<Rpc | "dashboard", Scope> = {
  recommendation: "read",
  clickstream: "write",
  similarContent: "read",
  content: "write",
  likes: "write",
  addInterest: "write",
  events: "read",
  eventsLiked: "read",
  recommendedEvents: "read",
  personalizedEventSearch: "read",
  dashboard: "read",
};

/** `key:read,key:write,…` → key → scope. Throws on anything else, so a typo cannot open the gateway. */
export function parseApiKeys(spec: string): Map<string, Scope> {
  const keys = new Map<string, Scope>();
  for (const entry of spec
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9._~+/=-]{16,}):(read|write)$/.exec(entry);
    if (!m) throw new Error(`GATEWAY_API_KEYS: "${entry.slice(0, 8)}…" is not key:read or key:write with a key of at least 16 characters`);
    keys.set(m[1]!, m[2] as Scope);
  }
  return keys;
}

/**
 * API keys (when any are configured: every call needs one, mutations one with write scope) and a
 * per-client limit on mutations (per key, or per peer address without keys). Both front doors ask
 * it before calling the API.
 */
export class Access {
  private readonly limiter: RateLimiterMemory;

  constructor(
    private readonly keys: Map<string, Scope>,
    private readonly mutationsPerMinute: number,
    private readonly logger: Logger,
  ) {
    this.limiter = new RateLimiterMemory({ points: mutationsPerMinute, duration: 60 });
  }

  /** Resolves when `caller` may call `method` (the RPC's name, e.g. "likes"); else throws a ConnectError. */
  async check(method: Rpc | "dashboard", caller: Caller): Promise<void> {
    const writes = SCOPES[method] === "write";
    if (this.keys.size > 0) {
      const scope = caller.apiKey ? this.keys.get(caller.apiKey) : undefined;
      if (!scope) {
        this.logger.warn({ method, address: caller.address, keySent: Boolean(caller.apiKey) }, "refused: no valid API key");
        throw new ConnectError(`${API_KEY_HEADER}: a valid API key is required`, Code.Unauthenticated);
      }
      if (writes && scope !== "write") {
        this.logger.warn({ method, address: caller.address }, "refused: read-only API key used for a mutation");
        throw new ConnectError(`${API_KEY_HEADER}: this key may only read; ${method} needs a key with write scope`, Code.PermissionDenied);
      }
    }
    if (!writes) return;
    try {
      await this.limiter.consume(caller.apiKey ?? caller.address);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      this.logger.warn({ method, address: caller.address }, "refused: mutation rate limit");
      throw new ConnectError(
        `rate limit: at most ${this.mutationsPerMinute} mutations a minute per client; retry in ${Math.ceil(err.msBeforeNext / 1000)} s`,
        Code.ResourceExhausted,
      );
    }
  }
}

export function callerOf(header: { get(name: string): string | null }): Caller {
  return { apiKey: header.get(API_KEY_HEADER) ?? undefined, address: header.get(PEER_HEADER) ?? "" };
}
