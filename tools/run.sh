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
#
# Run again while FKS runs, it starts only what is not running. What runs keeps the settings
# and secrets it was started with (no secret file is changed under it); run.sh lists the FKS_*
# variables you set that it does not have. `tools/stop.sh`, then `tools/run.sh` applies them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The FKS_* variables the caller set, before this script sets its own: when FKS is already
# running, those its programs were not started with are reported as not applied.
declare -A asked=()
for v in $(compgen -e FKS_ || true); do asked[$v]=${!v}; done

detach=0
for a in "$@"; do
  case $a in
    --detach|-d) detach=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# Is FKS already running: a program recorded in the state folder, Redis or PostgreSQL?
running=()   # name:pid of the FKS programs running before this run
for f in "$STATE"/pids/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null) || continue
  case $pid in ''|*[!0-9]*) continue ;; esac
  kill -0 "$pid" 2>/dev/null && running+=("$(basename "$f" .pid):$pid")
done
up=0; [ ${#running[@]} -gt 0 ] && up=1
not_applied=()   # "NAME why", reported at the end
# A running PostgreSQL or Redis keeps its port and settings: the URLs name the port it runs on.
if [ -f "$PGDIR/data/postmaster.pid" ] \
   && fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
  up=1
  p=$(sed -n 4p "$PGDIR/data/postmaster.pid")
  if [ -n "$p" ] && [ "$p" != "$PG_PORT" ]; then
    not_applied+=("FKS_LOCAL_PG_PORT (PostgreSQL runs on $p)"); PG_PORT=$p
  fi
  for v in FKS_PG_FSYNC FKS_PG_OPTS; do
    [ -n "${asked[$v]+set}" ] && not_applied+=("$v (PostgreSQL was already running)")
  done
fi
if [ -f "$STATE/redis/redis.pid" ] && kill -0 "$(cat "$STATE/redis/redis.pid")" 2>/dev/null; then
  up=1
  p=$(awk '$1 == "port" {print $2}' "$STATE/redis/redis.conf" 2>/dev/null)
  if [ -n "$p" ] && [ "$p" != "$REDIS_PORT" ]; then
    not_applied+=("FKS_LOCAL_REDIS_PORT (Redis runs on $p)"); REDIS_PORT=$p
  fi
fi

# secret NAME : the value from the environment, else from the state folder, else generated.
# While FKS runs, a secret file that exists is never changed: the programs read it at start,
# so a new value there would not be the one in use.
generated=()
secret() {
  local name=$1 file="$STATE/secrets/$1"
  if [ "$up" = 1 ] && [ -s "$file" ]; then
    if [ -n "${!name:-}" ] && [ "${!name}" != "$(cat "$file")" ]; then
      not_applied+=("$name (the value in use is the one in $file)")
    fi
    return 0
  fi
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

fks_pg_start "$PGDIR" "$PG_PORT" "$(cat "$STATE/secrets/FKS_PG_PASSWORD")"
fks_redis_start "$STATE/redis" "$REDIS_PORT" "$(cat "$STATE/secrets/FKS_REDIS_PASSWORD")"

# The URLs every program (and `build/tools/fks`, through FKS_PG_URL_FILE) reads; while FKS
# runs they stay as they are, like the other secret files.
url_file() {
  [ "$up" = 1 ] && [ -s "$STATE/secrets/$1" ] && return 0
  ( umask 077; printf '%s' "$2" >"$STATE/secrets/$1" )
}
url_file FKS_PG_URL "$(printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres' \
  "$(cat "$STATE/secrets/FKS_PG_PASSWORD")" "$PG_PORT")"
url_file FKS_REDIS_URL "$(printf 'redis://:%s@127.0.0.1:%s/0' \
  "$(cat "$STATE/secrets/FKS_REDIS_PASSWORD")" "$REDIS_PORT")"

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
  note=""
  for g in "${generated[@]:-}"; do [ "$g" = "$name" ] && note=" (generated now)"; done
  for g in "${not_applied[@]:-}"; do
    [ "${g%% *}" = "$name" ] && note=" (in use: the $name you set is not applied)"
  done
  printf '  %-20s %s%s\n' "$name" "$(cat "$STATE/secrets/$name")" "$note"
done
cat <<EOF

Next:
  curl -s http://127.0.0.1:$FKS_GATEWAY_PORT/health
  psql "\$(cat $STATE/secrets/FKS_PG_URL)" -c '\\dt'
  FKS_PG_URL_FILE=$STATE/secrets/FKS_PG_URL $BUILD/tools/fks keys list
  tools/stop.sh            stops everything (Ctrl-C here does the same)
EOF

# FKS was running before this run: say what the caller set that its programs were not started
# with (read from each running program's environment).
if [ "$up" = 1 ]; then
  for v in "${!asked[@]}"; do
    case $v in
      # run.sh's own, the services' (above), the secrets (secret()) and the URLs run.sh sets
      FKS_ROOT|FKS_STATE_DIR|FKS_BUILD_DIR|FKS_PG_BIN|FKS_LOCAL_PG_PORT|FKS_LOCAL_REDIS_PORT) continue ;;
      FKS_PG_FSYNC|FKS_PG_OPTS|FKS_WEBHOOK_SECRET|FKS_ADMIN_KEY|FKS_PG_PASSWORD) continue ;;
      FKS_REDIS_PASSWORD|FKS_PG_URL|FKS_REDIS_URL|FKS_*_FILE) continue ;;
    esac
    for entry in "${running[@]:-}"; do
      [ -n "$entry" ] || continue
      pid=${entry##*:} found=0 val=""
      if [ -r "/proc/$pid/environ" ]; then
        while IFS= read -r -d '' e; do
          if [ "${e%%=*}" = "$v" ]; then found=1; val=${e#*=}; break; fi
        done 2>/dev/null <"/proc/$pid/environ"
        [ "$found" = 1 ] && [ "$val" = "${asked[$v]}" ] && continue
        if [ "$found" = 1 ]; then why="with another value"; else why="without it"; fi
        not_applied+=("$v (the running programs were started $why)")
      else
        not_applied+=("$v (the running programs may have been started with another value)")
      fi
      break
    done
  done
  if [ ${#not_applied[@]} -gt 0 ]; then
    echo
    echo "FKS was already running: what runs keeps the settings and secrets it was started with."
    echo "Not applied (nothing was changed):"
    printf '%s\n' "${not_applied[@]}" | sort | while IFS= read -r line; do
      printf '  %-22s %s\n' "${line%% *}" "${line#* }"
    done
    echo "To apply them: tools/stop.sh, then this tools/run.sh command again."
  fi
fi

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
