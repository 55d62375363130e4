// Writes services/gateway/openapi.json from the protos: `pnpm openapi` after changing gateway.proto (a test compares them).
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gatewayOpenApi } from "./openapi.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const file = fileURLToPath(new URL("../openapi.json", import.meta.url));
writeFileSync(file, gatewayOpenApi(repoRoot));
console.log(`wrote ${file}`);
