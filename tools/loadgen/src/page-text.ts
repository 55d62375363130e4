import type { Draws } from "./draws.js";
import { COMMON_WORDS, type Topic } from "./vocabulary.js";
import { BEHAVIOUR } from "./workload-params.js";

/** Two or three words of the topic, in title case. */
export function pageTitle(d: Draws, topic: Topic): string {
  return d
    .sample(topic.words, d.int(2, 3))
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join(" ");
}

/** Sentences of topic words among common words, about as long as a reference page's text (~400–500 characters). */
export function pageText(d: Draws, topic: Topic): string {
  const sentences: string[] = [];
  for (let length = 0; length < 400; ) {
    const words = Array.from({ length: d.int(7, 12) }, () => (d.chance(BEHAVIOUR.topicWordShare) ? d.pick(topic.words) : d.pick(COMMON_WORDS)));
    const sentence = `${words[0]![0]!.toUpperCase()}${words.join(" ").slice(1)}.`;
    sentences.push(sentence);
    length += sentence.length + 1;
  }
  return sentences.join(" ");
}
