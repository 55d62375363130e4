import { consumerNames, partitionDurable, type Bus } from "@recsys/bus";

/** analytics' CLICKS consumer: letters under dlq.analytics-clicks. */
export const clicksConsumer = consumerNames("analytics", "clicks");

/** Its one durable over every partition, in stream order: analytics-clicks-p0. */
export const inStreamOrder = (bus: Bus) => ({ partitions: 1, subject: () => bus.topology.clicksSubjects });
export const clicksDurable = partitionDurable(clicksConsumer.durable, 0);

/** analytics' VISIBILITY consumer (hidden urls, for Trending): durable analytics-visibility, letters under dlq.analytics-visibility. */
export const visibilityConsumer = consumerNames("analytics", "visibility");
