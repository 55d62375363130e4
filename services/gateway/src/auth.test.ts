// User tokens signed by an identity provider's key set (GATEWAY_JWKS as a file), and the settings a
// gateway refuses to start with.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { Authenticator } from "./auth.js";

const caller = (token: string) => ({ authorization: `Bearer ${token}`, address: "127.0.0.1" });

describe("user tokens from a key set", () => {
  it("verifies a token signed by a key of the set, with its issuer and audience; refuses one signed by another key", async () => {
    const { privateKey, publicKey } = await generateKeyPair("ES256");
    const other = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    const file = join(mkdtempSync(join(tmpdir(), "jwks-")), "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const auth = new Authenticator(new Map(), { jwks: file, issuer: "https://id.example.com", audience: "recsys" });
    const sign = (key: CryptoKey, claims: { iss?: string; aud?: string } = {}) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setSubject("alice")
        .setIssuer(claims.iss ?? "https://id.example.com")
        .setAudience(claims.aud ?? "recsys")
        .setExpirationTime("5m")
        .sign(key);

    expect(await auth.authenticate(caller(await sign(privateKey)))).toEqual({ kind: "user", userid: "alice" });
    await expect(auth.authenticate(caller(await sign(other.privateKey)))).rejects.toThrow("authorization: the token's signature does not verify");
    await expect(auth.authenticate(caller(await sign(privateKey, { aud: "another-app" })))).rejects.toThrow(/the token's aud claim is not valid/);
    await expect(auth.authenticate(caller(await sign(privateKey, { iss: "https://evil.example.net" })))).rejects.toThrow(/the token's iss claim is not valid/);
    // An HS256 token cannot pass for one of the set's keys.
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("x".repeat(32)));
    await expect(auth.authenticate(caller(hs))).rejects.toMatchObject({ rawMessage: "authorization: the token's algorithm is not accepted" });
  });
});

describe("settings", () => {
  it("refuses a short secret, both a secret and a key set, a key set it cannot read, and one over plain http off loopback", () => {
    expect(() => new Authenticator(new Map(), { secret: "too-short" })).toThrow(/GATEWAY_JWT_SECRET: must be at least 32 bytes/);
    expect(() => new Authenticator(new Map(), { secret: "s".repeat(32), jwks: "/x.json" })).toThrow(/not both/);
    expect(() => new Authenticator(new Map(), { jwks: "/nonexistent/jwks.json" })).toThrow(/GATEWAY_JWKS: cannot read/);
    // A key set fetched over plain http could be anyone's: only on loopback.
    expect(() => new Authenticator(new Map(), { jwks: "http://id.example.com/jwks.json" })).toThrow(/GATEWAY_JWKS: a key set URL must be https:\/\//);
    for (const jwks of ["https://id.example.com/jwks.json", "http://127.0.0.1:8081/jwks.json", "http://[::1]:8081/jwks.json"]) {
      expect(() => new Authenticator(new Map(), { jwks }), jwks).not.toThrow();
    }
  });

  it("is open with neither keys nor a token key, and not with either", () => {
    expect(new Authenticator(new Map()).open).toBe(true);
    expect(new Authenticator(new Map([["k".repeat(16), "read"]])).open).toBe(false);
    expect(new Authenticator(new Map(), { secret: "s".repeat(32) }).open).toBe(false);
  });
});
