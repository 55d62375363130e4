import type { MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import { PEER_HEADER } from "@recsys/server";
import type { Cluster, Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { API_KEY_HEADER, Authenticator, SCOPE_RANK, type Caller, type Principal, type Scope } from "./auth.js";
import { throttledWarn } from "./failure-log.js";
import { LeasedLimiter, type Limiter } from "./leased-limiter.js";

export { API_KEY_HEADER, parseApiKeys, type Caller, type Scope } from "./auth.js";

type Methods = (typeof GatewayService)["method"];
/** The gateway's RPCs by method name ("likes"), the keys of `GatewayApi`. */
export type Rpc = keyof Methods;
type Input<M extends Rpc> = MessageShape<Methods[M]["input"]>;

/**
 * Who may call an RPC: the scope a service key needs, and what a user token may do: `any` (the
 * answer is nobody's own), `never`, or act for the userid in `field` only.
 */
interface Policy<M extends Rpc> {
  scope: Scope;
  /** `optional`: a call without the userid is nobody's own (any user token may make it). */
  user: "any" | "never" | { field: string; userid: (req: Input<M>) => string | undefined; optional?: true };
}

/** Every RPC's policy: a mapped type, so that a new RPC without one does not build. */
const POLICIES: { [M in Rpc]: Policy<M> } = {
  // With a userid, the answer leaves out that user's pages: their own.
  recommendation: { scope: "read", user: { field: "userid", userid: (r) => r.userid, optional: true } },
  relatedContent: { scope: "read", user: { field: "userid", userid: (r) => r.userid, optional: true } },
  events: { scope: "read", user: "any" },
  similarContent: { scope: "read", user: { field: "userid", userid: (r) => r.userid } },
  eventsLiked: { scope: "read", user: { field: "userid", userid: (r) => r.userid } },
  recommendedEvents: { scope: "read", user: { field: "userid", userid: (r) => r.userid } },
  personalizedEventSearch: { scope: "read", user: { field: "userid", userid: (r) => r.userid } },
  clickstream: { scope: "write", user: { field: "event.userid", userid: (r) => r.event?.userid } },
  likes: { scope: "write", user: { field: "liked.userid", userid: (r) => r.liked?.userid } },
  addInterest: { scope: "write", user: { field: "interest.userid", userid: (r) => r.interest?.userid } },
  // Pages are the site's, not a user's.
  content: { scope: "write", user: "never" },
  // A user sees the windows of its own clicks; the mix and the trending urls are nobody's own.
  clickMetrics: { scope: "read", user: { field: "userid", userid: (r) => r.userid } },
  eventMix: { scope: "read", user: "any" },
  trending: { scope: "read", user: "any" },
  // Erasure and hiding change what everybody gets: admin keys only.
  deleteUser: { scope: "admin", user: "never" },
  hidePage: { scope: "admin", user: "never" },
};

/** Calls a minute per client: service keys and anonymous callers by key or address, user tokens by user. */
export interface RateLimits {
  reads: number;
  writes: number;
  userReads: number;
  userWrites: number;
}

type Limiters = Record<keyof RateLimits, Limiter>;

type RefusalKind = "unauthenticated" | "auth_failures" | "scope" | "user_token" | "other_user" | "rate_limit";

/** Calls refused at either door, by kind: the log writes at most a line a second of each. */
export const refusals = new Counter({
  name: "recsys_gateway_refusals_total",
  help: "Calls the gateway refused, at either door and the dashboard's, by kind: unauthenticated, auth_failures (from an address past its failed attempts a minute), scope (a key's too low), user_token (where a key is needed), other_user (a user token for another), rate_limit",
  labelNames: ["kind"] as const,
  registers: [registry],
});

/** What a refusal's warning tells: the call refused (of those since the last line, the one written). */
interface RefusalFields {
  method: string;
  address: string;
}

/** In-process limiters: for one gateway, tests, and as the insurance of the shared ones when Redis is away. */
export function memoryLimiters(limits: RateLimits): Record<keyof RateLimits, RateLimiterMemory> {
  const of = (points: number) => new RateLimiterMemory({ points, duration: 60 });
  return { reads: of(limits.reads), writes: of(limits.writes), userReads: of(limits.userReads), userWrites: of(limits.userWrites) };
}

/**
 * Limiters shared by every gateway replica through Redis, taken a few points at a time by a busy client (leased-limiter.ts). While
 * Redis is away each replica counts on its own (the in-process insurance) rather than refusing or letting everything through.
 */
export function sharedLimiters(redis: Redis | Cluster, namespace: string, limits: RateLimits): Limiters {
  const insurance = memoryLimiters(limits);
  const of = (which: keyof RateLimits) =>
    new LeasedLimiter(
      new RateLimiterRedis({
        storeClient: redis,
        keyPrefix: `${namespace ? `${namespace}:` : ""}gateway:rate:${which}`,
        points: limits[which],
        duration: 60,
        rejectIfRedisNotReady: true,
        insuranceLimiter: insurance[which],
      }),
    );
  return { reads: of("reads"), writes: of("writes"), userReads: of("userReads"), userWrites: of("userWrites") };
}

/** Calls a minute from one address that may fail authentication before the rest of that minute's are refused unchecked. */
export const DEFAULT_AUTH_FAILURES_PER_MINUTE = 600;

/** Limits high enough never to be met: for tests of anything else. */
export const UNLIMITED: RateLimits = { reads: 1e9, writes: 1e9, userReads: 1e9, userWrites: 1e9 };

/**
 * Authentication (service keys, user tokens), authorisation by each RPC's policy, and rate limits
 * on reads and writes per client. Both front doors ask it before calling the API.
 */
export class Access {
  /**
   * A warning per kind of refusal, at most once a second with the count since (every one is counted in `refusals`): a client
   * refused thousands of times a second would otherwise write as many lines.
   */
  private readonly refused: {
    scope: (f: RefusalFields) => void;
    userToken: (f: RefusalFields) => void;
    otherUser: (f: RefusalFields) => void;
    unauthenticated: (f: RefusalFields & { reason: string }) => void;
    authFailures: (f: RefusalFields) => void;
    rateLimit: (f: RefusalFields & { limit: keyof RateLimits }) => void;
  };
  /**
   * Failed authentications by address, in this process. Past `authFailuresPerMinute`, the address's calls are refused for the
   * rest of the minute before any token is checked, but for a key of this gateway's or a token it verified in the last minute.
   * The rate limits count only callers who authenticated, and a forged token costs a signature check (80 µs) each time.
   */
  private readonly failures: RateLimiterMemory;

  constructor(
    readonly authenticator: Authenticator,
    private readonly limits: RateLimits,
    private readonly limiters: Limiters,
    logger: Logger,
    private readonly authFailuresPerMinute = DEFAULT_AUTH_FAILURES_PER_MINUTE,
  ) {
    this.failures = new RateLimiterMemory({ points: authFailuresPerMinute, duration: 60 });
    const refusal = <F extends RefusalFields>(kind: RefusalKind, message: string) => {
      const warn = throttledWarn<F>(logger, message, "refusals");
      return (fields: F) => {
        refusals.inc({ kind });
        warn(fields);
      };
    };
    this.refused = {
      scope: refusal("scope", "refused: API key scope too low"),
      userToken: refusal("user_token", "refused: a user token where a service key is needed"),
      otherUser: refusal("other_user", "refused: user token acting for another user"),
      unauthenticated: refusal("unauthenticated", "refused: not authenticated"),
      authFailures: refusal("auth_failures", "refused: too many failed authentications from this address"),
      rateLimit: refusal("rate_limit", "refused: rate limit"),
    };
  }

  /** A gateway without credentials and with in-process limits. */
  static open(logger: Logger, limits: RateLimits = UNLIMITED): Access {
    return new Access(new Authenticator(new Map()), limits, memoryLimiters(limits), logger);
  }

  /** Resolves when `caller` may call `method` with `req`; else throws a ConnectError naming what is wrong. */
  async check<M extends Rpc>(method: M, caller: Caller, req: Input<M>): Promise<void> {
    const limit = await this.authorize(method, caller, req);
    await limit();
  }

  /**
   * `check` in two steps: resolves when `caller` is who it says and may call `method` with `req`, to the rate limit's step, which
   * resolves when the call is within the caller's limit (a round trip to Redis).
   */
  async authorize<M extends Rpc>(method: M, caller: Caller, req: Input<M>): Promise<() => Promise<void>> {
    const principal = await this.authenticated(method, caller);
    const policy = POLICIES[method];
    if (principal.kind === "service" && SCOPE_RANK[principal.scope] < SCOPE_RANK[policy.scope]) {
      this.refused.scope({ method, address: caller.address });
      throw new ConnectError(`${API_KEY_HEADER}: this key's scope is ${principal.scope}; ${method} needs ${policy.scope}`, Code.PermissionDenied);
    }
    if (principal.kind === "user") {
      if (policy.user === "never") {
        this.refused.userToken({ method, address: caller.address });
        throw new ConnectError(`authorization: ${method} needs a service key, not a user token`, Code.PermissionDenied);
      }
      const actingFor = policy.user === "any" ? undefined : policy.user.userid(req);
      if (policy.user !== "any" && actingFor !== principal.userid && !(policy.user.optional && !actingFor)) {
        this.refused.otherUser({ method, address: caller.address });
        throw new ConnectError(`${policy.user.field}: a user token acts only for its own user (${principal.userid})`, Code.PermissionDenied);
      }
    }
    return () => this.limit(principal, policy.scope === "read" ? "read" : "write", method, caller);
  }

  /**
   * The dashboard's data: a read key (or an open gateway); user tokens do not see it. Resolves with the client: its key, or its
   * address on an open gateway.
   */
  async checkDashboard(caller: Caller): Promise<string> {
    const principal = await this.authenticated("dashboard", caller);
    if (principal.kind === "user") {
      this.refused.userToken({ method: "dashboard", address: caller.address });
      throw new ConnectError("authorization: the dashboard needs a service key, not a user token", Code.PermissionDenied);
    }
    await this.limit(principal, "read", "dashboard", caller);
    return clientOf(principal);
  }

  private async authenticated(method: string, caller: Caller): Promise<Principal> {
    const failed = await this.failures.get(caller.address);
    if (failed && failed.consumedPoints >= this.authFailuresPerMinute && failed.msBeforeNext > 0 && !this.authenticator.vouches(caller)) {
      this.refused.authFailures({ method, address: caller.address });
      throw new ConnectError(
        `authentication: ${this.authFailuresPerMinute} calls from this address failed it within a minute; retry in ${Math.ceil(failed.msBeforeNext / 1000)} s`,
        Code.ResourceExhausted,
      );
    }
    try {
      return await this.authenticator.authenticate(caller);
    } catch (err) {
      this.refused.unauthenticated({ method, address: caller.address, reason: (err as Error).message });
      await this.failures.consume(caller.address).catch((res: unknown) => {
        if (!(res instanceof RateLimiterRes)) throw res;
      });
      throw err;
    }
  }

  private async limit(principal: Principal, kind: "read" | "write", method: string, caller: Caller): Promise<void> {
    const user = principal.kind === "user";
    const which: keyof RateLimits = user ? (kind === "read" ? "userReads" : "userWrites") : kind === "read" ? "reads" : "writes";
    try {
      await this.limiters[which].consume(clientOf(principal));
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      this.refused.rateLimit({ method, address: caller.address, limit: which });
      throw new ConnectError(
        `rate limit: at most ${this.limits[which]} ${kind === "read" ? "queries" : "mutations"} a minute per ${user ? "user" : "client"}; retry in ${Math.ceil(err.msBeforeNext / 1000)} s`,
        Code.ResourceExhausted,
      );
    }
  }
}

/** Who a limit counts: a user, a service key, or an address for a caller without credentials. */
function clientOf(principal: Principal): string {
  return principal.kind === "user" ? `user:${principal.userid}` : principal.kind === "service" ? `key:${principal.keyId}` : `addr:${principal.address}`;
}

export function callerOf(header: { get(name: string): string | null }): Caller {
  return {
    apiKey: header.get(API_KEY_HEADER) ?? undefined,
    authorization: header.get("authorization") ?? undefined,
    address: header.get(PEER_HEADER) ?? "",
  };
}
