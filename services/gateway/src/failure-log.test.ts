import { describe, expect, it } from "vitest";
import { failureLog } from "./failure-log.js";

describe("failureLog", () => {
  it("writes the first failure at once, then at most one line a second with how many failed since", () => {
    const lines: Array<{ failures: number; message: string }> = [];
    const logger = { warn: (fields: { failures: number }, message: string) => lines.push({ failures: fields.failures, message }) };
    let t = 0;
    const log = failureLog(logger as never, "Redis failed a read", 1_000, () => t);
    for (; t < 2_500; t += 100) log(new Error("down"));
    expect(lines).toEqual([
      { failures: 1, message: "Redis failed a read" },
      { failures: 10, message: "Redis failed a read" },
      { failures: 10, message: "Redis failed a read" },
    ]);
  });
});
