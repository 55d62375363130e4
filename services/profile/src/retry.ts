import { isRetryable } from "./sql-state.js";

const MAX_ATTEMPTS = 5;

/** Runs `attempt` again on deadlock or serialization failure; other errors throw. */
export async function retrying<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (n >= MAX_ATTEMPTS || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * 20 * n));
    }
  }
}
