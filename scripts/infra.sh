#!/usr/bin/env bash
# Local infrastructure for the stack and CI: PostgreSQL 15 (+pgvector), Redis 7, NATS 2.9 (JetStream).
#   bash scripts/infra.sh up     # start whatever is down (local only), wait, ensure pgvector
#   bash scripts/infra.sh check  # report only; exit 0 iff everything is up and pgvector is available
# Env overrides: PGHOST/PGPORT, REDIS_URL, NATS_URL, REDIS_MAXMEMORY (default 4gb). Non-local
# services are only checked, never started. A local Redis runs with a memory limit and noeviction:
# full, it refuses writes (covisit waits, NOT_SERVING) instead of evicting counts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { echo "infra: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# url_hostport URL DEFAULT_PORT -> "host port" (drops scheme, user:pass@, /path; first of a comma list)
url_hostport() {
  local u=${1%%,*}; u=${u#*://}; u=${u##*@}; u=${u%%/*}
  if [[ $u =~ ^\[(.*)\](:([0-9]+))?$ || $u =~ ^([^:]*)(:([0-9]+))?$ ]]; then
    echo "${BASH_REMATCH[1]:-127.0.0.1} ${BASH_REMATCH[3]:-$2}"
  else echo "$u $2"; fi
}

PG_VER=15
PG_CONFIG=/usr/lib/postgresql/$PG_VER/bin/pg_config
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
REDIS_MAXMEMORY=${REDIS_MAXMEMORY:-4gb}
read -r REDIS_HOST REDIS_PORT < <(url_hostport "$REDIS_URL" 6379)
read -r NATS_HOST NATS_PORT < <(url_hostport "$NATS_URL" 4222)

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 || $1 == /* ]]; }

# psql as superuser; client_min_messages hides "already exists" notices, connect timeout avoids hangs
pgq() { PGCONNECT_TIMEOUT=5 PGOPTIONS='-c client_min_messages=warning' psql -h "$PGHOST" -p "$PGPORT" -U postgres -d "${2:-postgres}" -v ON_ERROR_STOP=1 -tAqc "$1"; }

# --- health checks (all bounded by timeouts so a dead remote host cannot hang us) ---
pg_ok()     { timeout 5 pg_isready -q -h "$PGHOST" -p "$PGPORT"; }
redis_ok()  { [[ $(timeout 3 redis-cli -u "${REDIS_URL%%,*}" ping 2>/dev/null) == PONG ]]; }
# NATS greets every client with an INFO line; it says "jetstream":true only when JetStream is on
nats_ok()   { timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r l <&3 && [[ $l == *\"jetstream\":true* ]]' "$NATS_HOST" "$NATS_PORT" 2>/dev/null; }
vector_ok() { [[ $(pgq "SELECT 1 FROM pg_available_extensions WHERE name='vector'" 2>/dev/null) == 1 ]]; }

# --- starters (only ever used for local services) ---
start_pg() { pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start; }
start_redis() {
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy noeviction \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
# A local Redis already running without a memory limit gets one (and noeviction) at run time.
limit_redis() {
  is_local "$REDIS_HOST" || return 0
  local rc=(timeout 3 redis-cli -u "${REDIS_URL%%,*}")
  if [[ $("${rc[@]}" config get maxmemory | tail -n1) == 0 ]]; then
    "${rc[@]}" config set maxmemory "$REDIS_MAXMEMORY" >/dev/null
    log "redis: maxmemory set to $REDIS_MAXMEMORY"
  fi
  if [[ $("${rc[@]}" config get maxmemory-policy | tail -n1) != noeviction ]]; then
    "${rc[@]}" config set maxmemory-policy noeviction >/dev/null
    log "redis: maxmemory-policy set to noeviction"
  fi
}
start_nats() {
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

# ensure NAME CHECK START HOST: start only if down and local, then wait up to 30 s
ensure() {
  local name=$1 ok=$2 start=$3 host=$4
  if $ok; then log "$name: up"; return; fi
  is_local "$host" || die "$name at $host is down and not local; refusing to start it"
  log "$name: down, starting"
  # 9>&- : a daemon must not inherit the lock fd, or it would hold the lock for its whole life
  $start >&2 9>&- || log "$name: start command returned $?, waiting anyway"   # e.g. already starting up
  for _ in $(seq 60); do
    if $ok; then log "$name: up"; return; fi
    sleep 0.5
  done
  die "$name: not answering after 30 s"
}

# Mirror URL the machine already uses for Debian (deb822 or one-line format), default deb.debian.org
debian_mirror() {
  local u
  u=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n1 | tr -d '[:space:]' || true)
  u=${u%/}; echo "${u:-http://deb.debian.org/debian}"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# pgvector is not packaged for PG 15 in bookworm: build trixie's Debian source against server-dev-15
build_pgvector() {
  is_local "$PGHOST" || die "pgvector missing on non-local PostgreSQL $PGHOST; install it there"
  local pkgs=() p
  for p in postgresql-server-dev-$PG_VER build-essential dpkg-dev; do installed "$p" || pkgs+=("$p"); done
  if ((${#pkgs[@]})); then
    log "pgvector: installing ${pkgs[*]}"
    # try the existing lists first; refresh the system lists once only if that fails
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
  fi
  local tmp; tmp=$(mktemp -d /tmp/infra-pgvector.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"   # lets apt's _apt sandbox user write its downloads
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/src"
  chown _apt "$tmp/src" 2>/dev/null || true   # apt-get source downloads into cwd as _apt
  echo "deb-src $(debian_mirror) trixie main" >"$tmp/sources.list"
  # private sources/lists/cache: the machine's own apt state is never read or modified
  local apt=(apt-get -qq -o Dir::Etc::sourcelist="$tmp/sources.list" -o Dir::Etc::sourceparts=-
             -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache")
  log "pgvector: fetching trixie source ($(cat "$tmp/sources.list"))"
  "${apt[@]}" update >&2
  (cd "$tmp/src" && "${apt[@]}" source pgvector >/dev/null)
  local dir; dir=$(find "$tmp/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
  [[ -n $dir ]] || die "pgvector: apt-get source produced no source tree"
  log "pgvector: building $(basename "$dir")"
  # OPTFLAGS= drops -march=native (as Debian does) so the .so survives a move to another CPU
  make -C "$dir" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG" OPTFLAGS= >/dev/null
  make -C "$dir" -s install PG_CONFIG="$PG_CONFIG" OPTFLAGS= >/dev/null
  rm -rf "$tmp"; trap - EXIT
}

cmd_up() {
  exec 9>/tmp/infra-sh.lock   # parallel callers (CI jobs, stack:up) wait instead of racing
  flock -w 300 9 || die "/tmp/infra-sh.lock held by another 'infra.sh up' for 5 min"
  ensure postgres pg_ok start_pg "$PGHOST"
  ensure redis redis_ok start_redis "$REDIS_HOST"
  limit_redis
  ensure nats nats_ok start_nats "$NATS_HOST"
  if vector_ok; then log "pgvector: available"; else build_pgvector; fi
  vector_ok || die "pgvector: still not available after build"
  [[ $(pgq "SELECT 1 FROM pg_database WHERE datname='test'") == 1 ]] || pgq "CREATE DATABASE test"
  pgq "CREATE EXTENSION IF NOT EXISTS vector" test
  log "ready in ${SECONDS}s (pgvector $(pgq "SELECT extversion FROM pg_extension WHERE extname='vector'" test) in db test)"
}

cmd_check() {
  local rc=0
  report() { if $2; then echo "infra: $1: up"; else echo "infra: $1: DOWN"; rc=1; fi; }
  report "postgres ($PGHOST:$PGPORT)" pg_ok
  report "redis ($REDIS_HOST:$REDIS_PORT)" redis_ok
  report "nats+jetstream ($NATS_HOST:$NATS_PORT)" nats_ok
  if vector_ok; then echo "infra: pgvector: available"; else echo "infra: pgvector: MISSING"; rc=1; fi
  return "$rc"
}

case ${1:-} in
  up) cmd_up ;;
  check) cmd_check ;;
  *) echo "usage: $0 up|check" >&2; exit 2 ;;
esac
