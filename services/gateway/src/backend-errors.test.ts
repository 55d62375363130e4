import { createServer } from "node:net";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { createLogger } from "@recsys/logging";
import { describe, expect, it } from "vitest";
import { hideBackendFailures } from "./backend-errors.js";

const logger = createLogger("backend-errors-test");

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const failure = (call: Promise<unknown>) =>
  call.then(
    () => "answered",
    (err: unknown) => {
      const e = ConnectError.from(err);
      return `${Code[e.code]}: ${e.rawMessage}`;
    },
  );

describe("a backend's failure, as the gateway's caller sees it", () => {
  it("names the backend and hides the transport's text (its host and port)", async () => {
    const port = await closedPort();
    const transport = (interceptors: ReturnType<typeof hideBackendFailures>[]) =>
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", interceptors });
    // Without the interceptor the caller read where profile runs.
    expect(await failure(createClient(ProfileService, transport([])).events({ limit: 5 }))).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
    expect(await failure(createClient(ProfileService, transport([hideBackendFailures("profile", logger)])).events({ limit: 5 }))).toBe(
      "Unavailable: profile is unavailable",
    );
  });

  it("hides what a backend's own failure says, and passes its answers about the request as they are", async () => {
    const ingest = createClient(
      IngestService,
      createRouterTransport(
        (router) =>
          router.service(IngestService, {
            publishClicks(req) {
              if (req.clicks[0]?.userid === "") throw new ConnectError("clicks: must not be empty", Code.InvalidArgument);
              if (req.clicks[0]?.userid === "full") throw new ConnectError("clicks: CLICKS is full", Code.ResourceExhausted);
              throw new ConnectError("publishing to the bus failed: Error: connect ECONNREFUSED nats://10.0.0.5:4222", Code.Unavailable);
            },
          }),
        { transport: { interceptors: [hideBackendFailures("ingest", logger)] } },
      ),
    );
    const click = (userid: string) => ingest.publishClicks({ clicks: [{ userid, url: "https://e.org/a" }] });
    expect(await failure(click("u"))).toBe("Unavailable: ingest is unavailable");
    expect(await failure(click(""))).toBe("InvalidArgument: clicks: must not be empty");
    expect(await failure(click("full"))).toBe("ResourceExhausted: clicks: CLICKS is full");
  });
});
