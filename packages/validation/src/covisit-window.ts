/**
 * Two clicks of one user co-visit when the second is at most this much event time after the first.
 * covisit counts with it and the reference SQL (tools/loadgen) is built from it, so the oracle cannot drift from what it checks.
 */
export const COVISIT_WINDOW_MS = 10 * 60_000;

/** How far behind a user's newest click a click may arrive and still count, unless covisit's ALLOWED_LATENESS_MS says otherwise. */
export const DEFAULT_ALLOWED_LATENESS_MS = 5 * 60_000;

/** The window in the words of the docs and messages: "10 minutes". */
export const COVISIT_WINDOW_IN_WORDS = `${COVISIT_WINDOW_MS / 60_000} minutes`;
