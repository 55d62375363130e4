/**
 * A leaky bucket per key (the generic cell rate algorithm): a key may spend up to `capacity` at once; its spending is then paid
 * off at `capacity` a `windowMs`, so over any window it spends at most twice the capacity. One number per key: when its spending
 * is paid off (ms). At most `maxKeys` keys, in the order they were last seen: those seen longest ago go as soon as their spending
 * is paid off (a key forgotten then starts with a full bucket, as it would have), and beyond `maxKeys` whatever they owe.
 */
export class LeakyBuckets {
  /** key -> when its spending is paid off (ms); a Map keeps insertion order: the first was seen longest ago. */
  private readonly paidOffAt = new Map<string, number>();
  /** How long one unit of spending takes to be paid off. */
  private readonly msPerUnit: number;

  constructor(
    readonly capacity: number,
    readonly windowMs: number,
    readonly maxKeys: number,
  ) {
    this.msPerUnit = windowMs / capacity;
  }

  /**
   * Spends `cost` of the key's bucket at `now`: undefined when it fits, or else how long (ms) until it would. A refusal spends
   * nothing, but counts as being seen: a key kept busy by refusals is not the first to be forgotten.
   */
  take(key: string, cost: number, now: number): number | undefined {
    const owed = this.paidOffAt.get(key);
    const from = Math.max(owed ?? now, now);
    const until = from + cost * this.msPerUnit;
    if (until - now > this.windowMs) {
      if (owed !== undefined) this.set(key, owed, now);
      return until - now - this.windowMs;
    }
    this.set(key, until, now);
    return undefined;
  }

  /** Gives back `cost` the key spent (a publish that failed, a duplicate JetStream did not store); nothing for a key forgotten. */
  giveBack(key: string, cost: number): void {
    const at = this.paidOffAt.get(key);
    if (at !== undefined) this.paidOffAt.set(key, at - cost * this.msPerUnit);
  }

  /** Keys kept: at most `maxKeys`. */
  get size(): number {
    return this.paidOffAt.size;
  }

  private set(key: string, until: number, now: number): void {
    this.paidOffAt.delete(key);
    this.paidOffAt.set(key, until);
    for (const [first, at] of this.paidOffAt) {
      if (at > now && this.paidOffAt.size <= this.maxKeys) break;
      this.paidOffAt.delete(first);
    }
  }
}
