import { Code, ConnectError } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { natsOf, type TestStack } from "./stack.js";

/** The state of one of the stack's streams (`name` without the namespace: "CONTENT", "ENGAGEMENT"). */
export async function streamState(stack: TestStack, name: string) {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    return (await (await jetstreamManager(nc)).streams.info(`${stack.namespace.toUpperCase()}_${name}`)).state;
  } finally {
    await nc.close();
  }
}

/** Why a call was refused whole (`code: message`), or undefined when it was taken; an item refused alone is said as such. */
export async function refusal(
  call: () => Promise<{ results: Array<{ outcome: { case: string | undefined; value?: unknown } }> }>,
): Promise<string | undefined> {
  try {
    const res = await call();
    const rejected = res.results.find((r) => r.outcome.case === "rejected");
    return rejected ? `item: ${JSON.stringify(rejected.outcome.value)}` : undefined;
  } catch (err) {
    const e = ConnectError.from(err);
    return `${Code[e.code]}: ${e.rawMessage}`;
  }
}
