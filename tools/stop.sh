#!/usr/bin/env bash
# tools/stop.sh - stops everything tools/run.sh started: the FKS programs (SIGTERM, then SIGKILL
# after 10 s, by the pids recorded in the state folder), Redis and PostgreSQL. Data is kept;
# the next tools/run.sh reuses it. `tools/stop.sh --purge` also deletes the state folder.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${FKS_STATE_DIR:-$FKS_ROOT/.fks}
purge=0
[ "${1:-}" = --purge ] && purge=1
[ -d "$STATE" ] || { fks_say "nothing to stop ($STATE does not exist)"; exit 0; }

fks_stop_programs "$STATE"
fks_redis_stop "$STATE/redis"
PGDIR="$STATE/postgresql"
[ -L "$PGDIR" ] && PGDIR=$(readlink -f "$PGDIR")
fks_pg_stop "$PGDIR"
fks_say "stopped."
if [ "$purge" = 1 ]; then
  [ -L "$STATE/postgresql" ] && rm -rf "$(readlink -f "$STATE/postgresql")"
  rm -rf "$STATE"
  fks_say "deleted $STATE"
fi
