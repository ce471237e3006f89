#!/usr/bin/env bash
# tools/stop.sh - stops everything tools/run.sh started: first the FKS programs, by the pids
# recorded in the state folder (SIGTERM to all of them at once: the gateway first, so no new
# alert comes in, then the workers, the bus last; then they are waited for together, and what
# still runs after 15 s gets SIGKILL), then Redis and PostgreSQL together, which the programs
# needed until they had drained. Data is kept; the next tools/run.sh reuses it.
# `tools/stop.sh --purge` also deletes the state folder.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${FKS_STATE_DIR:-$FKS_ROOT/.fks}
purge=0
[ "${1:-}" = --purge ] && purge=1
[ -d "$STATE" ] || { fks_say "nothing to stop ($STATE does not exist)"; exit 0; }

fks_stop_programs "$STATE"
PGDIR="$STATE/postgresql"
[ -L "$PGDIR" ] && PGDIR=$(readlink -f "$PGDIR")
fks_redis_stop "$STATE/redis" &
fks_pg_stop "$PGDIR"
wait
fks_say "stopped."
if [ "$purge" = 1 ]; then
  [ -L "$STATE/postgresql" ] && rm -rf "$(readlink -f "$STATE/postgresql")"
  rm -rf "$STATE"
  fks_say "deleted $STATE"
fi
