import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { isLoopback } from "@recsys/server";
import { checkUserid } from "@recsys/validation";
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from "jose";

/** read < write < admin: a key may do what its scope and every scope below it allows. */
export type Scope = "read" | "write" | "admin";
export const SCOPE_RANK: Record<Scope, number> = { read: 0, write: 1, admin: 2 };

export const API_KEY_HEADER = "x-api-key";

/** Who is calling, as authenticated. */
export type Principal =
  /** A gateway with no credentials configured (loopback only): anyone, as a writer. */
  | { kind: "anonymous"; address: string }
  /** An internal service's key: acts for any user, up to its scope. `keyId` names the key without revealing it (a hash). */
  | { kind: "service"; keyId: string; scope: Scope }
  /** A user's token: acts only as `userid` (its `sub`). */
  | { kind: "user"; userid: string };

/** What a request carries: its headers as sent, and the peer address. */
export interface Caller {
  apiKey?: string;
  authorization?: string;
  address: string;
}

/** `key:read,key:write,key:admin,…` → key → scope. Throws on anything else, so a typo cannot open the gateway. */
export function parseApiKeys(spec: string): Map<string, Scope> {
  const keys = new Map<string, Scope>();
  for (const entry of spec
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9._~+/=-]{16,}):(read|write|admin)$/.exec(entry);
    if (!m) throw new Error(`GATEWAY_API_KEYS: "${entry.slice(0, 8)}…" is not key:read, key:write or key:admin with a key of at least 16 characters`);
    keys.set(m[1]!, m[2] as Scope);
  }
  return keys;
}

export interface TokenSettings {
  /** HS256 secret, at least 32 bytes. */
  secret?: string;
  /** A JWKS: an http(s) URL, or the path of a JSON file. */
  jwks?: string;
  issuer?: string;
  audience?: string;
}

/** The key (or key set) user tokens are verified against, and the algorithms it allows; undefined when none is configured. */
function tokenKey(settings: TokenSettings): { key: Uint8Array | JWTVerifyGetKey; algorithms: string[] } | undefined {
  if (settings.secret && settings.jwks) throw new Error("GATEWAY_JWT_SECRET and GATEWAY_JWKS: configure one of them, not both");
  if (settings.secret) {
    const key = new TextEncoder().encode(settings.secret);
    if (key.length < 32) throw new Error("GATEWAY_JWT_SECRET: must be at least 32 bytes (HS256)");
    return { key, algorithms: ["HS256"] };
  }
  if (settings.jwks) {
    const algorithms = ["RS256", "PS256", "ES256", "EdDSA"];
    if (/^https?:\/\//.test(settings.jwks)) {
      const url = new URL(settings.jwks);
      // Over plain http anyone between the gateway and the key set's server could hand it keys of their own, and sign any user.
      if (url.protocol !== "https:" && !isLoopback(url.hostname.replace(/^\[|\]$/g, ""))) {
        throw new Error(`GATEWAY_JWKS: a key set URL must be https:// (plain http only on loopback), got ${url.origin}`);
      }
      return { key: createRemoteJWKSet(url), algorithms };
    }
    let set: unknown;
    try {
      set = JSON.parse(readFileSync(settings.jwks, "utf8"));
    } catch (err) {
      throw new Error(`GATEWAY_JWKS: cannot read a JSON Web Key Set from ${settings.jwks}: ${String(err)}`);
    }
    return { key: createLocalJWKSet(set as Parameters<typeof createLocalJWKSet>[0]), algorithms };
  }
  return undefined;
}

const tokenDigest = (token: string) => createHash("sha256").update(token).digest("base64url");

/** The token of an `authorization: Bearer <token>` header. */
const bearerOf = (caller: Caller) => caller.authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];

const unauthenticated = (message: string) => new ConnectError(message, Code.Unauthenticated);

/** Why a token was refused, in words a client can act on. */
function tokenRefusal(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "the token has expired";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (err instanceof errors.JWTClaimValidationFailed) return `the token's ${err.claim} claim is not valid: ${err.reason}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return "the token's algorithm is not accepted";
  if (err instanceof errors.JWKSNoMatchingKey) return "no key of the key set matches the token";
  if (err instanceof errors.JOSEError) return `the token is not valid (${err.code})`;
  return "the token is not valid";
}

/** How long a verified token is taken without verifying it again (at most to its `exp`), and how many are kept so. */
export const VERIFIED_TOKEN_CACHE = { ttlMs: 60_000, max: 10_000 } as const;

/** Service keys and user tokens; with neither configured every caller is anonymous. */
export class Authenticator {
  private readonly token: ReturnType<typeof tokenKey>;
  /** Each key's principal, made once. */
  private readonly services: Map<string, Principal & { kind: "service" }>;
  /**
   * Tokens verified in the last minute, by their SHA-256 (a token may be kilobytes), to their user and until when they hold: a
   * user's calls carry the same token, and verifying one costs 95-112 µs of CPU (jose, HS256 or RS256), a third of what the
   * gateway spends on a `Recommendation`; its hash under 10 µs.
   */
  private readonly verified = new Map<string, { userid: string; untilMs: number }>();
  /**
   * Tokens that verified, until their `exp`: those vouch for their caller at an address refused for its failed attempts, and are
   * then verified again as any other once their minute in `verified` is over. Within `verified`'s minute only, a user sharing the
   * address (a NAT, a proxy) with someone failing on purpose was refused a minute after their last check.
   */
  private readonly vouched = new Map<string, number>();

  constructor(
    keys: Map<string, Scope>,
    private readonly settings: TokenSettings = {},
  ) {
    this.token = tokenKey(settings);
    this.services = new Map(
      [...keys].map(([key, scope]) => [key, { kind: "service", keyId: createHash("sha256").update(key).digest("base64url").slice(0, 22), scope }]),
    );
  }

  /** No key and no token configured: the gateway is open (main.ts allows it on loopback only). */
  get open(): boolean {
    return this.services.size === 0 && this.token === undefined;
  }

  /** Who `caller` is; throws Unauthenticated with the reason when its credentials do not hold. */
  async authenticate(caller: Caller): Promise<Principal> {
    if (caller.apiKey !== undefined) {
      const service = this.services.get(caller.apiKey);
      if (!service) throw unauthenticated(`${API_KEY_HEADER}: not a valid API key`);
      return service;
    }
    const bearer = bearerOf(caller);
    if (caller.authorization !== undefined && bearer === undefined) throw unauthenticated("authorization: must be Bearer <token>");
    if (bearer !== undefined) {
      if (!this.token) throw unauthenticated("authorization: this gateway takes no user tokens");
      return { kind: "user", userid: this.verifiedBefore(bearer) ?? (await this.verify(bearer)) };
    }
    if (this.open) return { kind: "anonymous", address: caller.address };
    throw unauthenticated(`credentials required: an ${API_KEY_HEADER} header or authorization: Bearer <user token>`);
  }

  /**
   * Whether `caller` carries credentials that held before: a key of this gateway's, or a token that verified and has not expired
   * (checked again if its minute in the cache is over). Access lets such callers through from an address refused for its failed
   * attempts.
   */
  vouches(caller: Caller): boolean {
    if (caller.apiKey !== undefined) return this.services.has(caller.apiKey);
    const bearer = bearerOf(caller);
    if (bearer === undefined) return false;
    const digest = tokenDigest(bearer);
    const untilMs = this.vouched.get(digest);
    if (untilMs === undefined) return false;
    if (untilMs > Date.now()) return true;
    this.vouched.delete(digest);
    return false;
  }

  private verifiedBefore(token: string): string | undefined {
    const digest = tokenDigest(token);
    const hit = this.verified.get(digest);
    if (!hit) return undefined;
    if (hit.untilMs > Date.now()) return hit.userid;
    this.verified.delete(digest);
    return undefined;
  }

  private async verify(token: string): Promise<string> {
    const { key, algorithms } = this.token!;
    let sub: string | undefined;
    let exp: number | undefined;
    try {
      const options = { algorithms, issuer: this.settings.issuer, audience: this.settings.audience, requiredClaims: ["sub", "exp"] };
      const verified = key instanceof Uint8Array ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
      sub = verified.payload.sub;
      exp = verified.payload.exp;
    } catch (err) {
      throw unauthenticated(`authorization: ${tokenRefusal(err)}`);
    }
    let userid: string;
    try {
      userid = checkUserid(sub ?? "", "sub");
    } catch (err) {
      throw unauthenticated(`authorization: the token's ${String((err as Error).message)}`);
    }
    // The oldest goes first when full (a Map keeps its insertion order).
    const digest = tokenDigest(token);
    if (this.verified.size >= VERIFIED_TOKEN_CACHE.max) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(digest, { userid, untilMs: Math.min((exp ?? 0) * 1000, Date.now() + VERIFIED_TOKEN_CACHE.ttlMs) });
    this.vouched.delete(digest);
    if (this.vouched.size >= VERIFIED_TOKEN_CACHE.max) this.vouched.delete(this.vouched.keys().next().value!);
    this.vouched.set(digest, (exp ?? 0) * 1000);
    return userid;
  }
}
