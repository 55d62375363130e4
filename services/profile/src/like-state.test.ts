import { describe, expect, it } from "vitest";
import { isLaterOrSame, likeTermChange } from "./like-state.js";

const at = (sourceTimeMs: bigint, eventId: string) => ({ sourceTimeMs, eventId });

describe("the latest like state of a (user, page id)", () => {
  it("is the one with the later source time, whatever the event ids", () => {
    expect(isLaterOrSame(at(2n, "a"), at(1n, "z"))).toBe(true);
    expect(isLaterOrSame(at(1n, "z"), at(2n, "a"))).toBe(false);
  });

  it("is, at the same source time, the one with the greater event id in string order", () => {
    expect(isLaterOrSame(at(5n, "b"), at(5n, "a"))).toBe(true);
    expect(isLaterOrSame(at(5n, "a"), at(5n, "b"))).toBe(false);
    expect(isLaterOrSame(at(5n, "B"), at(5n, "a"))).toBe(false);
    expect(isLaterOrSame(at(5n, "e10"), at(5n, "e9"))).toBe(false);
  });

  it("stays the stored one when the same like comes again, so a redelivery changes nothing", () => {
    expect(isLaterOrSame(at(7n, "e1"), at(7n, "e1"))).toBe(true);
  });

  it("orders times beyond 2^53 exactly", () => {
    const big = 2n ** 60n;
    expect(isLaterOrSame(at(big, "a"), at(big + 1n, "a"))).toBe(false);
    expect(isLaterOrSame(at(big + 1n, "a"), at(big, "a"))).toBe(true);
  });

  it("decides the same winner whichever of two states arrives first", () => {
    const states = [at(1n, "a"), at(1n, "b"), at(2n, "a"), at(0n, "z")];
    for (const a of states) {
      for (const b of states) {
        if (a === b) continue;
        expect(isLaterOrSame(a, b)).toBe(!isLaterOrSame(b, a));
      }
    }
  });
});

describe("a newer like state's effect on the interest", () => {
  it("adds a term for a like without one, takes out the term of an unlike, and otherwise keeps it", () => {
    expect(likeTermChange(true, false)).toBe("add");
    expect(likeTermChange(false, true)).toBe("remove");
    expect(likeTermChange(true, true)).toBe("keep");
    expect(likeTermChange(false, false)).toBe("keep");
  });
});
