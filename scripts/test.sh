#!/usr/bin/env bash
# Everything the tests need, then the tests: pnpm, dependencies, build, local NATS/Redis/PostgreSQL, unit and integration suites.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
bash "$root/scripts/infra.sh" up
cd "$root"
pnpm test "$@"
