import { createHash } from "node:crypto";

/** The kinds of event a user sends whose ids the user chooses. */
export type UserEventKind = "click" | "like" | "interest";

/**
 * The `Nats-Msg-Id` of one event of a user: a client's event id is unique only among its own
 * user's events of one kind (a phone numbers its clicks 1, 2, 3…), so the broker's dedup keys on
 * the kind, the user and the id together. The first 32 hex digits of sha-256 of their JSON array:
 * no choice of userid and id can make two of them meet, whatever characters they hold.
 */
export function userEventMessageId(kind: UserEventKind, userid: string, eventId: string): string {
  return `${kind}-${createHash("sha256")
    .update(JSON.stringify([kind, userid, eventId]))
    .digest("hex")
    .slice(0, 32)}`;
}
