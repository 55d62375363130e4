// How every launcher here runs a service's process (scripts/stack.mjs, scripts/cluster.mjs, the tests' harness); each image's CMD
// says the same.
import { join } from "node:path";

/**
 * Node's flags for a service beyond the source maps. The gateway's young generation: at 500 SimilarContent/s it allocates about
 * 90 KB a request, and with V8's default semi-space (16 MB) it stopped for a scavenge of 3-6 ms three times a second, with objects
 * that lived across one promoted to the old generation. With 64 MB its p99 at that rate fell from 10-20 ms to 6-9 ms and p50 by
 * half a millisecond, for about 70 MB more memory (services/gateway/README.md).
 */
export const NODE_FLAGS = { gateway: ["--max-semi-space-size=64"] };

/** The node arguments that run `service` from the repository at `root`. */
export function serviceArgs(root, service) {
  return ["--enable-source-maps", ...(NODE_FLAGS[service] ?? []), join(root, "services", service, "dist/main.js")];
}
