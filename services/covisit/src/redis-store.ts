// The store lives in @recsys/covisit-store, so that the gateway can read the counts as covisit does without covisit's own dependencies.
export * from "@recsys/covisit-store";
