#!/usr/bin/env bash
# The main job on a fresh clone: set-up if needed, then the stack, the reference workload and sample queries.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
bash "$root/scripts/infra.sh" up
node "$root/scripts/demo.mjs" "$@"
