import { RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";

/** What Access asks of a limiter: resolves when `key` may call once more, rejects with a RateLimiterRes when it may not. */
export interface Limiter {
  consume(key: string): Promise<unknown>;
}

/** The most points one lease takes: a busy client costs its replica one round trip to the shared limiter per this many calls. */
export const MAX_LEASE = 64;
/** A lease takes at most this share of what the client's window has left, so that replicas share the last of it call by call. */
const SHARE_OF_REMAINING = 8;
/** A lease takes at most what the client called for on this replica in the last span this long. */
const DEMAND_SPAN_MS = 100;
/** The clients whose leases a replica keeps; past it the one that called here least recently is dropped, with the points it held. */
export const MAX_LEASED_CLIENTS = 10_000;

interface Lease {
  /** Points taken from the shared limiter and not yet spent, until `expiresAt` (the end of the shared window they came from). */
  tokens: number;
  expiresAt: number;
  /** The shared window's points left when last told. */
  remaining: number;
  /** Calls in the current demand span, and in the one before. */
  spanStart: number;
  calls: number;
  lastCalls: number;
  /** A lease on its way: calls meanwhile wait for it instead of each taking one. */
  pending?: Promise<void>;
}

/**
 * A shared limiter (rate-limiter-flexible's, on Redis) taken a few points at a time: a busy client's calls spend points leased to
 * this replica from the shared window, and only a lease is a round trip to Redis. A lease takes no more than the client called for
 * here in the last 100 ms, no more than an eighth of what its window has left, and at most 64 points; it ends with the window it
 * came from. So a client calling now and then is counted call by call as before, and near its limit every replica takes one point
 * at a time. Replicas together never admit more than the limit; a point leased to one replica and not spent before its window
 * ends is one the others could not have (at most the client's demand of 100 ms). A lease refused because other replicas took the
 * rest meanwhile is given back at once, and the call is counted alone.
 */
export class LeasedLimiter implements Limiter {
  private readonly leases = new Map<string, Lease>();

  constructor(private readonly shared: RateLimiterAbstract) {}

  /** The clients holding a lease here. */
  get clients(): number {
    return this.leases.size;
  }

  async consume(key: string): Promise<void> {
    const lease = this.leaseOf(key, Date.now());
    for (;;) {
      const now = Date.now();
      if (lease.tokens > 0 && now < lease.expiresAt) {
        lease.tokens--;
        return;
      }
      if (lease.pending) {
        await lease.pending;
        continue;
      }
      const size = this.leaseSize(lease, now);
      if (size <= 1) {
        await this.take(key, lease, 1);
        return;
      }
      // Refused, the lease leaves `remaining` at 0: the next turn of the loop counts this call alone.
      lease.pending = this.take(key, lease, size)
        .catch((err: unknown) => {
          if (!(err instanceof RateLimiterRes)) throw err;
        })
        .finally(() => {
          lease.pending = undefined;
        });
      await lease.pending;
    }
  }

  /** `points` from the shared window: a lease's go to `lease.tokens`; one point is the call itself. */
  private async take(key: string, lease: Lease, points: number): Promise<void> {
    const now = Date.now();
    try {
      const res = await this.shared.consume(key, points);
      lease.remaining = res.remainingPoints;
      lease.expiresAt = now + res.msBeforeNext;
      if (points > 1) lease.tokens = points;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      lease.remaining = 0;
      lease.expiresAt = now + err.msBeforeNext;
      // A refused consume still counts its points: a lease's are given back for others to take one by one.
      if (points > 1) await this.shared.reward(key, points).catch(() => {});
      throw err;
    }
  }

  private leaseSize(lease: Lease, now: number): number {
    const remaining = now < lease.expiresAt ? lease.remaining : this.shared.points;
    return Math.min(MAX_LEASE, Math.max(lease.calls, lease.lastCalls), Math.floor(remaining / SHARE_OF_REMAINING));
  }

  /** The client's lease, with this call counted in its demand. */
  private leaseOf(key: string, now: number): Lease {
    let lease = this.leases.get(key);
    if (!lease) {
      if (this.leases.size >= MAX_LEASED_CLIENTS) this.leases.delete(this.leases.keys().next().value!);
      lease = { tokens: 0, expiresAt: 0, remaining: 0, spanStart: now, calls: 0, lastCalls: 0 };
      this.leases.set(key, lease);
    }
    if (now - lease.spanStart >= DEMAND_SPAN_MS) {
      lease.lastCalls = now - lease.spanStart < 2 * DEMAND_SPAN_MS ? lease.calls : 0;
      lease.calls = 0;
      lease.spanStart = now;
      // The map in order of use, refreshed once a span rather than every call: the first lease is the one idle longest.
      this.leases.delete(key);
      this.leases.set(key, lease);
    }
    lease.calls++;
    return lease;
  }
}
