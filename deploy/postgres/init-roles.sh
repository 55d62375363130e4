#!/bin/sh
# Run by the postgres image on its first start (an empty data directory), as the superuser: the
# roles of profile. recsys_migration owns profile's schema and runs its migrations (CREATE on the
# database, for the schema); recsys_runtime is what profile works as, granted by the migrations
# only reads and writes of rows and the use of their functions; recsys_reader is what the gateway
# reads profile's tables as (SimilarContent), granted by the migrations only reads of rows. The
# vector extension is created here because only a superuser may.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$POSTGRES_DB" -v migration_password="$PG_MIGRATION_PASSWORD" -v runtime_password="$PG_RUNTIME_PASSWORD" \
  -v reader_password="$PG_READER_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE recsys_migration LOGIN PASSWORD :'migration_password';
CREATE ROLE recsys_runtime LOGIN PASSWORD :'runtime_password';
CREATE ROLE recsys_reader LOGIN PASSWORD :'reader_password';
GRANT CREATE ON DATABASE :"db" TO recsys_migration;
SQL
