#!/usr/bin/env bash
# The passwords, the service token and the gateway's two API keys of deploy/compose.yaml: generated into deploy/.env (which compose reads) the first
# time, one per variable that is not there yet; those already there are kept, so running it again
# changes nothing. The file is readable by its owner only. Then:
#   docker compose -f deploy/compose.yaml up --build --wait
set -euo pipefail
env_file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.env"
umask 077
touch "$env_file"
chmod 600 "$env_file"
for name in \
  NATS_ADMIN_PASSWORD NATS_INGEST_PASSWORD NATS_COVISIT_PASSWORD NATS_EMBEDDER_PASSWORD NATS_PROFILE_PASSWORD NATS_ANALYTICS_PASSWORD NATS_ARCHIVE_PASSWORD \
  REDIS_ADMIN_PASSWORD REDIS_COVISIT_PASSWORD REDIS_GATEWAY_PASSWORD \
  POSTGRES_PASSWORD PG_MIGRATION_PASSWORD PG_RUNTIME_PASSWORD PG_READER_PASSWORD \
  SERVICE_TOKEN GATEWAY_WRITE_KEY GATEWAY_READ_KEY; do
  grep -q "^${name}=" "$env_file" && continue
  # A letter, then 32 hex digits (128 random bits): safe in URLs and in every server's configuration
  # without quoting; nats-server reads a value starting with a digit as a number.
  echo "${name}=p$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >>"$env_file"
  echo "generated ${name}"
done
echo "passwords in ${env_file}"
