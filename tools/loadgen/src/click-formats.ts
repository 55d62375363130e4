import { drawStreams, type Draws } from "./draws.js";
import type { SyntheticClick } from "./workload-format.js";

/** How `generate` writes clicks: ours, or as the Redpanda/Decodable or the AWS reference pipeline's generator would. */
export const CLICK_FORMATS = ["ours", "redpanda", "aws"] as const;
export type ClickFormat = (typeof CLICK_FORMATS)[number];

/** Event types and their shares in each reference format (a shopping funnel: most events are views). */
export const EVENT_MIX: Record<Exclude<ClickFormat, "ours">, ReadonlyArray<readonly [string, number]>> = {
  redpanda: [
    ["view_item", 0.7],
    ["add_to_cart", 0.15],
    ["login", 0.075],
    ["logout", 0.075],
  ],
  aws: [
    ["ViewContent", 0.7],
    ["Search", 0.15],
    ["AddToCart", 0.1],
    ["Purchase", 0.05],
  ],
};

function eventOf(draws: Draws, mix: ReadonlyArray<readonly [string, number]>): string {
  let x = draws.float();
  for (const [event, share] of mix) {
    if (x < share) return event;
    x -= share;
  }
  return mix.at(-1)![0];
}

/**
 * The clicks as lines of `format`, same users, urls and times (so the co-visit truth holds: every type
 * counts as a visit by default), event types drawn from EVENT_MIX with their own seeded stream.
 */
export function inFormat(clicks: SyntheticClick[], format: ClickFormat, seed: number): object[] {
  if (format === "ours") return clicks;
  const draws = drawStreams(seed ^ 0x5eed_f0f0, 1)[0]!;
  const mix = EVENT_MIX[format];
  return clicks.map((c, i) => {
    const event = eventOf(draws, mix);
    if (format === "redpanda")
      return {
        timestamp: c.event_time,
        event,
        user_id: c.userid,
        site_id: `site-${draws.int(1, 5)}`,
        url: c.url,
        on_site_seconds: c.seconds_on_page,
        viewed_percent: c.viewed_percent,
      };
    return {
      timestamp: c.event_time,
      user_id: c.userid,
      event_name: event,
      click_id: `click-${seed}-${i}`,
      user_ip: `10.${draws.int(0, 255)}.${draws.int(0, 255)}.${draws.int(1, 254)}`,
      additional_data: {
        url: c.url,
        product_id: c.url.slice(c.url.lastIndexOf("/") + 1),
        price: draws.int(100, 50_000) / 100,
        percent_viewed: c.viewed_percent,
      },
    };
  });
}
