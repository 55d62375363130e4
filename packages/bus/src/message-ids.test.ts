import { describe, expect, it } from "vitest";
import { userEventMessageId } from "./message-ids.js";

describe("userEventMessageId", () => {
  it("is the same for the same user, kind and id, and differs when any of them does", () => {
    const id = userEventMessageId("click", "u1", "e1");
    expect(userEventMessageId("click", "u1", "e1")).toBe(id);
    expect(id).toMatch(/^click-[0-9a-f]{32}$/);
    const others = [
      userEventMessageId("click", "u2", "e1"),
      userEventMessageId("like", "u1", "e1"),
      userEventMessageId("interest", "u1", "e1"),
      userEventMessageId("click", "u1", "e2"),
    ];
    expect(new Set([id, ...others]).size).toBe(5);
  });

  it("keeps fields apart: no userid and id can spell another pair, nor another kind's prefixed id", () => {
    expect(userEventMessageId("click", "u1 e", "1")).not.toBe(userEventMessageId("click", "u1", "e 1"));
    expect(userEventMessageId("click", "u1", "like:L1")).not.toBe(userEventMessageId("like", "u1", "L1"));
    expect(userEventMessageId("click", "u1", "like-L1")).not.toBe(userEventMessageId("like", "u1", "L1"));
  });
});
