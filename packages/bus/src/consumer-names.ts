/**
 * Every durable consumer of the system, by service and the kind of message it consumes: one durable each.
 * Durable names and dead-letter sources (letters filed as dlq.<source>) come from here, so that no two consumers share either.
 */
const CONSUMED = {
  covisit: ["clicks", "visibility"],
  profile: ["clicks", "embeddings", "likes", "interest-embeddings", "visibility"],
  embedder: ["content", "stated-interests"],
  analytics: ["clicks", "visibility"],
} as const;

export type ConsumerService = keyof typeof CONSUMED;
export type ConsumedBy<S extends ConsumerService> = (typeof CONSUMED)[S][number];

export interface ConsumerNames {
  /** Its durable; an in-order consumer runs one per partition, `<durable>-p<n>`. */
  durable: string;
  /** Where its dead letters are filed: dlq.<source>. */
  deadLetterSource: string;
}

/**
 * The names in use before they were derived: deployed durables (with their ack floors) and filed
 * letters (what `pnpm dlq --source` selects) keep them.
 */
const DEPLOYED: { [S in ConsumerService]: { [K in ConsumedBy<S>]?: ConsumerNames } } = {
  covisit: { clicks: { durable: "covisit", deadLetterSource: "clicks" } },
  profile: {
    clicks: { durable: "profile-clicks", deadLetterSource: "profile-clicks" },
    embeddings: { durable: "profile-embeddings", deadLetterSource: "embeddings" },
    likes: { durable: "profile-likes", deadLetterSource: "likes" },
    "interest-embeddings": { durable: "profile-interests", deadLetterSource: "interest-embeddings" },
  },
  embedder: {
    content: { durable: "embedder", deadLetterSource: "content" },
    "stated-interests": { durable: "embedder-interests", deadLetterSource: "interests" },
  },
  analytics: {},
};

/** The names of `service`'s consumer of `kind`: those deployed, else `<service>-<kind>` for both. */
export function consumerNames<S extends ConsumerService>(service: S, kind: ConsumedBy<S>): ConsumerNames {
  const deployed: Partial<Record<string, ConsumerNames>> = DEPLOYED[service];
  return deployed[kind] ?? { durable: `${service}-${kind}`, deadLetterSource: `${service}-${kind}` };
}

/** Every consumer with its names. */
export function allConsumerNames(): Array<ConsumerNames & { service: ConsumerService; kind: string }> {
  return (Object.keys(CONSUMED) as ConsumerService[]).flatMap((service) =>
    CONSUMED[service].map((kind) => ({ service, kind, ...consumerNames(service, kind as ConsumedBy<typeof service>) })),
  );
}
