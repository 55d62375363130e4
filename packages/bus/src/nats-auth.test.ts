import { describe, expect, it } from "vitest";
import { inboxPrefixOf, natsAuthFrom, natsServers } from "./connection.js";

/** The two settings as commonEnv reads them: empty when unset. */
const natsConfig = (env: { NATS_USER?: string; NATS_PASSWORD?: string }) => ({ NATS_USER: env.NATS_USER ?? "", NATS_PASSWORD: env.NATS_PASSWORD ?? "" });

describe("a service's NATS credentials", () => {
  it("are none by default: NATS without users, as on this machine", () => {
    expect(natsAuthFrom(natsConfig({}))).toBeUndefined();
  });

  it("are the user and password, with replies on the user's own inbox", () => {
    expect(natsAuthFrom(natsConfig({ NATS_USER: "covisit", NATS_PASSWORD: "s3cret" }))).toEqual({ user: "covisit", pass: "s3cret" });
    expect(inboxPrefixOf("covisit")).toBe("_INBOX_covisit");
  });

  it("stop the start with a message naming both variables when only one is set", () => {
    expect(() => natsAuthFrom(natsConfig({ NATS_USER: "covisit" }))).toThrow(
      "invalid configuration: NATS_USER and NATS_PASSWORD are set together or not at all; only NATS_USER is set",
    );
    expect(() => natsAuthFrom(natsConfig({ NATS_PASSWORD: "s3cret" }))).toThrow(/only NATS_PASSWORD is set/);
  });
});

describe("NATS_URL", () => {
  it("is one server, or the servers of a cluster separated by commas (spaces allowed)", () => {
    expect(natsServers("nats://127.0.0.1:4222")).toEqual(["nats://127.0.0.1:4222"]);
    expect(natsServers("nats://a:4222, nats://b:4222,nats://c:4222")).toEqual(["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
  });

  it("with no server in it stops the start, naming the variable", () => {
    expect(() => natsServers(" , ")).toThrow("NATS_URL: no server given");
  });
});
