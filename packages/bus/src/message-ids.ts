import { createHash } from "node:crypto";

/** The kinds of event a user sends whose ids the user chooses. */
export type UserEventKind = "click" | "like" | "interest";

/**
 * The `Nats-Msg-Id` of one event of a user: a client's event id is unique only per user and kind, so the dedup keys on all three.
 * A hash of their JSON array, so no choice of userid and id can make two of them meet, whatever characters they hold.
 */
export function userEventMessageId(kind: UserEventKind, userid: string, eventId: string): string {
  return `${kind}-${createHash("sha256")
    .update(JSON.stringify([kind, userid, eventId]))
    .digest("hex")
    .slice(0, 32)}`;
}
