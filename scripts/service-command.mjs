// How the stack (scripts/stack.mjs), the cluster (scripts/cluster.mjs), the tests' harness and the bench's own analytics and
// embedder run a service's process; each image's CMD says the same (test/deploy-images.test.ts).
import { join } from "node:path";

/**
 * Node's flags for a service beyond the source maps. The gateway's young generation: at 500 SimilarContent/s it allocates about
 * 90 KB a request, and with V8's default semi-space (16 MB) it scavenged about three times a second, paused 113-162 ms in all
 * each 10 s, and promoted enough to need a full collection too. With 64 MB: 15-18 ms each 10 s and none, and its p99 at that rate
 * fell from a median of 11.7 ms over eight runs to 7.4; at 3,000 Recommendation/s no difference (services/gateway/README.md).
 * The price: about 70 MB more resident memory.
 */
export const NODE_FLAGS = { gateway: ["--max-semi-space-size=64"] };

/** The node arguments that run `service` from the repository at `root`. */
export function serviceArgs(root, service) {
  return ["--enable-source-maps", ...(NODE_FLAGS[service] ?? []), join(root, "services", service, "dist/main.js")];
}
