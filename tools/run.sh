#!/usr/bin/env bash
# tools/run.sh - the run command: FKS on this machine, with one command.
#
# Installs the Debian packages that are missing, builds FKS, creates (first time) or reuses a
# private PostgreSQL cluster and a Redis with AOF under the state folder (.fks/ in the project,
# or FKS_STATE_DIR), on loopback ports of their own, applies the migrations, starts every FKS
# program that has been built, and prints what runs where. Then it stays in the foreground and
# stops everything on Ctrl-C; `tools/stop.sh` stops everything from another terminal.
#
#   tools/run.sh            run in the foreground (Ctrl-C stops everything)
#   tools/run.sh --detach   start everything and return (stop with tools/stop.sh)
#
# Secrets: FKS_WEBHOOK_SECRET and FKS_ADMIN_KEY are taken from the environment when set,
# otherwise generated once (openssl rand) and kept in the state folder (mode 600). The
# PostgreSQL and Redis passwords are generated the same way. Nothing has a default password.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

detach=0
for a in "$@"; do
  case $a in
    --detach|-d) detach=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fks_die "unknown option '$a' (try --help)" ;;
  esac
done

STATE=${FKS_STATE_DIR:-$FKS_ROOT/.fks}
BUILD=${FKS_BUILD_DIR:-$FKS_ROOT/build}
PG_PORT=${FKS_LOCAL_PG_PORT:-55432}
REDIS_PORT=${FKS_LOCAL_REDIS_PORT:-56379}

fks_install_deps $FKS_PACKAGES_BUILD $FKS_PACKAGES_RUN curl
fks_say "building in $BUILD ..."
fks_build "$BUILD"

mkdir -p "$STATE/secrets" "$STATE/logs"
chmod 711 "$STATE"; chmod 700 "$STATE/secrets"
STATE=$(cd "$STATE" && pwd)

# secret NAME : the value from the environment, else from the state folder, else generated.
generated=()
secret() {
  local name=$1 file="$STATE/secrets/$1"
  if [ -n "${!name:-}" ]; then
    ( umask 077; printf '%s' "${!name}" >"$file" )
  elif [ ! -s "$file" ]; then
    ( umask 077; fks_secret | tr -d '\n' >"$file" )
    generated+=("$name")
  fi
}
secret FKS_WEBHOOK_SECRET
secret FKS_ADMIN_KEY
secret FKS_PG_PASSWORD
secret FKS_REDIS_PASSWORD

# PostgreSQL's data folder must be reachable by the `postgres` user; a project under /root is
# not, so the cluster then lives in /var/lib/fks-<hash> and the state folder links to it.
PGDIR="$STATE/postgresql"
if [ ! -L "$PGDIR" ] && [ "$(id -u)" = 0 ] && ! su postgres -s /bin/sh -c "test -x $(printf '%q' "$STATE")"; then
  alt=/var/lib/fks-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
  mkdir -p "$alt"; chmod 755 "$alt"
  ln -sfn "$alt" "$PGDIR"
  fks_say "note: $STATE is not reachable by the postgres user; the cluster lives in $alt"
fi
[ -L "$PGDIR" ] && PGDIR=$(readlink -f "$PGDIR")

fks_pg_start "$PGDIR" "$PG_PORT" "$(cat "$STATE/secrets/FKS_PG_PASSWORD")"
fks_redis_start "$STATE/redis" "$REDIS_PORT" "$(cat "$STATE/secrets/FKS_REDIS_PASSWORD")"

( umask 077
  printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres' \
    "$(cat "$STATE/secrets/FKS_PG_PASSWORD")" "$PG_PORT" >"$STATE/secrets/FKS_PG_URL"
  printf 'redis://:%s@127.0.0.1:%s/0' \
    "$(cat "$STATE/secrets/FKS_REDIS_PASSWORD")" "$REDIS_PORT" >"$STATE/secrets/FKS_REDIS_URL" )

# Every FKS program reads its secrets through the *_FILE variants.
export FKS_ENV=${FKS_ENV:-local}
export FKS_LOG_LEVEL=${FKS_LOG_LEVEL:-info}
export FKS_HTTP_BIND=${FKS_HTTP_BIND:-127.0.0.1}
export FKS_PG_URL_FILE="$STATE/secrets/FKS_PG_URL"
export FKS_REDIS_URL_FILE="$STATE/secrets/FKS_REDIS_URL"
export FKS_WEBHOOK_SECRET_FILE="$STATE/secrets/FKS_WEBHOOK_SECRET"
export FKS_ADMIN_KEY_FILE="$STATE/secrets/FKS_ADMIN_KEY"
unset FKS_PG_URL FKS_REDIS_URL FKS_WEBHOOK_SECRET FKS_ADMIN_KEY
export FKS_BUS_PORT=${FKS_BUS_PORT:-8004}
export FKS_GATEWAY_PORT=${FKS_GATEWAY_PORT:-8001}
export FKS_SIGNAL_PORT=${FKS_SIGNAL_PORT:-8002}
export FKS_DATA_PORT=${FKS_DATA_PORT:-8003}
export FKS_EXECUTION_PORT=${FKS_EXECUTION_PORT:-8006}
export FKS_AI_PORT=${FKS_AI_PORT:-8007}
export FKS_BUS_BIND=${FKS_BUS_BIND:-tcp://127.0.0.1:5570}
export FKS_BUS_STREAM_BIND=${FKS_BUS_STREAM_BIND:-tcp://127.0.0.1:5571}
export FKS_BUS_URL=${FKS_BUS_URL:-$FKS_BUS_BIND}
export FKS_BUS_STREAM_URL=${FKS_BUS_STREAM_URL:-$FKS_BUS_STREAM_BIND}

# With the AI worker built, execution trades what it scored (signal.scored), not every
# signal.created.
if [ -x "$BUILD/workers/fks-ai" ]; then
  export FKS_EXECUTION_INPUT=${FKS_EXECUTION_INPUT:-signal.scored}
fi

fks_say "applying migrations ..."
"$BUILD/tools/fks" migrate >>"$STATE/logs/migrate.log" 2>&1 \
  || { tail -n 20 "$STATE/logs/migrate.log" >&2; fks_die "migrations failed (log: $STATE/logs/migrate.log)"; }

# The programs, in start order: name, binary (relative to the build folder), port variable.
PROGRAMS=(
  "bus:bus/fks-bus:FKS_BUS_PORT"
  "gateway:gateway/fks-gateway:FKS_GATEWAY_PORT"
  "signal:workers/fks-signal:FKS_SIGNAL_PORT"
  "ai:workers/fks-ai:FKS_AI_PORT"
  "execution:workers/fks-execution:FKS_EXECUTION_PORT"
  "data:workers/fks-data:FKS_DATA_PORT"
)
started=()
for entry in "${PROGRAMS[@]}"; do
  IFS=: read -r name bin portvar <<<"$entry"
  [ -x "$BUILD/$bin" ] || continue
  fks_start_program "$STATE" "$name" "$STATE/logs/$name.log" "$BUILD/$bin"
  started+=("$name:${!portvar}")
done
for entry in "${started[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  fks_wait_http "http://127.0.0.1:$port/health" 20 \
    || { tail -n 20 "$STATE/logs/$name.log" >&2; fks_die "$name did not answer /health on port $port (log: $STATE/logs/$name.log)"; }
done

cat <<EOF

FKS is running ($FKS_ENV).
  PostgreSQL   127.0.0.1:$PG_PORT   data $PGDIR/data   log $PGDIR/postgresql.log
  Redis        127.0.0.1:$REDIS_PORT   data $STATE/redis (AOF on)   log $STATE/redis/redis.log
EOF
for entry in "${started[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  printf '  %-12s http://127.0.0.1:%s  (/health /ready /metrics)  log %s\n' \
    "$name" "$port" "$STATE/logs/$name.log"
done
[ ${#started[@]} -eq 0 ] && echo "  (no FKS program is built yet: only the services and the schema)"
cat <<EOF
  bus          $FKS_BUS_URL (clients), $FKS_BUS_STREAM_URL (event stream)

Secrets are in $STATE/secrets (mode 600):
EOF
for name in FKS_WEBHOOK_SECRET FKS_ADMIN_KEY; do
  new=""; for g in "${generated[@]:-}"; do [ "$g" = "$name" ] && new=" (generated now)"; done
  printf '  %-20s %s%s\n' "$name" "$(cat "$STATE/secrets/$name")" "$new"
done
cat <<EOF

Next:
  curl -s http://127.0.0.1:$FKS_GATEWAY_PORT/health
  psql "\$(cat $STATE/secrets/FKS_PG_URL)" -c '\\dt'
  tools/stop.sh            stops everything (Ctrl-C here does the same)
EOF

[ "$detach" = 1 ] && exit 0

trap 'echo; fks_say "stopping ..."; "$FKS_ROOT/tools/stop.sh"; exit 0' INT TERM
fks_say "running; Ctrl-C stops everything."
declare -A reported=()
while :; do
  for entry in "${started[@]:-}"; do
    [ -n "$entry" ] || continue
    name=${entry%%:*}
    pidf="$STATE/pids/$name.pid"
    if [ -f "$pidf" ] && ! kill -0 "$(cat "$pidf")" 2>/dev/null && [ -z "${reported[$name]:-}" ]; then
      reported[$name]=1
      fks_say "warning: $name exited; last lines of $STATE/logs/$name.log:"
      tail -n 5 "$STATE/logs/$name.log" >&2 || true
    fi
  done
  sleep 1 &
  wait $! || true
done
