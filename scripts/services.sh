#!/usr/bin/env bash
# Install (from Debian's packages) and start the servers the test suite needs on loopback:
# Redis (shared quotas) and PostgreSQL (the second database the suite runs against).
# Prints `export ...` lines for the test run; `eval "$(scripts/services.sh)"`.
set -euo pipefail
REDIS_PORT=${AIMI_TEST_REDIS_PORT:-6390}
PG_PORT=${AIMI_TEST_PG_PORT:-5432}
log() { echo "services: $*" >&2; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then log "missing ${need[*]} and not root: install them first"; exit 1; fi
  log "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >&2
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
log "redis on 127.0.0.1:$REDIS_PORT"

PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
PG_DATA=${AIMI_TEST_PG_DATA:-/tmp/aimi-test-pg}
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if ! "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    mkdir -p "$PG_DATA"; [ "$(id -u)" = 0 ] && chown postgres "$PG_DATA"
    as_pg "'$PG_BIN/initdb' -D '$PG_DATA' -A trust -U postgres >/dev/null"
  fi
  as_pg "'$PG_BIN/pg_ctl' -D '$PG_DATA' -o \"-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1\" -l '$PG_DATA/log' -w start >/dev/null"
fi
psql_pg() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAq "$@"; }
[ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname='aimi'")" = 1 ] || psql_pg -c "CREATE ROLE aimi LOGIN SUPERUSER PASSWORD 'aimi'"
[ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='aimi_test'")" = 1 ] || psql_pg -c "CREATE DATABASE aimi_test OWNER aimi"
log "postgresql on 127.0.0.1:$PG_PORT"

echo "export AIMI_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
echo "export AIMI_TEST_DATABASE_URL=postgresql+psycopg://aimi:aimi@127.0.0.1:$PG_PORT/aimi_test"
