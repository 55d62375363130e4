import { describe, expect, it } from "vitest";
import { allConsumerNames, consumerNames } from "./consumer-names.js";

describe("consumer names", () => {
  it("keep the durables and dead-letter sources deployments already use", () => {
    expect(consumerNames("covisit", "clicks")).toEqual({ durable: "covisit", deadLetterSource: "clicks" });
    expect(consumerNames("profile", "clicks")).toEqual({ durable: "profile-clicks", deadLetterSource: "profile-clicks" });
    expect(consumerNames("profile", "embeddings")).toEqual({ durable: "profile-embeddings", deadLetterSource: "embeddings" });
    expect(consumerNames("profile", "likes")).toEqual({ durable: "profile-likes", deadLetterSource: "likes" });
    expect(consumerNames("profile", "interest-embeddings")).toEqual({ durable: "profile-interests", deadLetterSource: "interest-embeddings" });
    expect(consumerNames("embedder", "content")).toEqual({ durable: "embedder", deadLetterSource: "content" });
    expect(consumerNames("embedder", "stated-interests")).toEqual({ durable: "embedder-interests", deadLetterSource: "interests" });
  });

  it("never give two consumers the same durable (or one another's partition durables) or dead-letter source", () => {
    const all = allConsumerNames();
    const durables = all.map((c) => c.durable);
    expect(new Set(durables).size).toBe(all.length);
    for (const d of durables) expect(durables.filter((other) => other !== d && other.startsWith(`${d}-p`))).toEqual([]);
    expect(new Set(all.map((c) => c.deadLetterSource)).size).toBe(all.length);
  });
});
