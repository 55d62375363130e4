import { createRegistry, fromBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ClickSchema, file_recsys_events_v1_events } from "@recsys/contracts/events/v1/events";
import { origin, type DeadLetter } from "./letters.js";

/** Every message type that travels on the bus. */
const busTypes = createRegistry(file_recsys_events_v1_events);

export type Payload =
  | { kind: "message"; type: string; message: JsonValue }
  | { kind: "undecodable"; type: string; error: string; hex: string }
  | { kind: "text"; text: string }
  | { kind: "bytes"; hex: string };

/**
 * A letter's data as a reader wants it: the bus message its content-type names (a CLICKS message
 * without one is a single Click, as the consumers read it), else text, else hex.
 */
export function payloadOf(letter: DeadLetter, clicksStream: string): Payload {
  const named = /messageType=([\w.]+)/.exec(letter.contentType ?? "")?.[1];
  const type = named ?? (letter.sourceStream === clicksStream ? ClickSchema.typeName : undefined);
  const hex = Buffer.from(letter.data).toString("hex");
  const schema = type === undefined ? undefined : busTypes.getMessage(type);
  if (type !== undefined && schema) {
    try {
      return { kind: "message", type, message: toJson(schema, fromBinary(schema, letter.data)) };
    } catch (err) {
      return { kind: "undecodable", type, error: String(err), hex };
    }
  }
  try {
    return { kind: "text", text: new TextDecoder("utf-8", { fatal: true }).decode(letter.data) };
  } catch {
    return { kind: "bytes", hex };
  }
}

/** `show`'s text: where the letter came from, its headers, its data. */
export function letterText(letter: DeadLetter, payload: Payload): string {
  const lines = [`dead letter #${letter.sequence}, ${letter.time}, filed under ${letter.source}`, `from ${origin(letter)}`, "", "headers:"];
  for (const [key, value] of Object.entries(letter.headers)) lines.push(`  ${key}: ${value}`);
  lines.push("", `data (${letter.data.length} bytes):`);
  if (payload.kind === "message") lines.push(`  ${payload.type}`, JSON.stringify(payload.message, null, 2));
  else if (payload.kind === "undecodable") lines.push(`  does not decode as ${payload.type}: ${payload.error}`, payload.hex);
  else lines.push(payload.kind === "text" ? payload.text : payload.hex);
  return lines.join("\n");
}
