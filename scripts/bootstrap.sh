#!/usr/bin/env bash
# Makes a fresh clone ready: pnpm (pinned in package.json), dependencies, build.
# Usage: source scripts/bootstrap.sh   (puts pnpm on PATH for the caller)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="$(node -p "require('$root/package.json').packageManager.split('@')[1]")"

# pnpm is not on a fresh machine: install the pinned version into the repo, not globally.
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$want" ]; then
  if [ ! -x "$root/.tools/node_modules/.bin/pnpm" ] || [ "$("$root/.tools/node_modules/.bin/pnpm" --version)" != "$want" ]; then
    echo "bootstrap: installing pnpm $want into .tools/" >&2
    npm install --silent --no-audit --no-fund --prefix "$root/.tools" "pnpm@$want" >&2
  fi
  export PATH="$root/.tools/node_modules/.bin:$PATH"
fi

# The dashboard's browser test drives Debian's Chromium: browser builds of their own cannot be downloaded here.
if ! command -v chromium >/dev/null 2>&1; then
  echo "bootstrap: installing chromium (Debian package)" >&2
  # try the existing lists first; refresh the system lists once only if that fails
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; } \
    || echo "bootstrap: could not install chromium; test/dashboard.test.ts needs /usr/bin/chromium" >&2
fi

cd "$root"
# onnxruntime-node's postinstall would fetch CUDA binaries from an unreachable host; the CPU build ships in the package.
export ONNXRUNTIME_NODE_INSTALL=skip
pnpm install --frozen-lockfile=false --prefer-offline >&2
pnpm build >&2
# The default embedding model is build output, made from the reference pages; built once.
if [ ! -f services/embedder/models/default/onnx/model_quantized.onnx ]; then
  pnpm build:model >&2
fi
