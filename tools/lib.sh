# tools/lib.sh - shell functions shared by run.sh, stop.sh and test.sh.
#
# Sourced, never run. Everything here works on a fresh Debian 12 machine as root (PostgreSQL
# then runs as the `postgres` user, since initdb refuses root) and as an ordinary user with
# sudo for apt. Services are started on loopback only, with their pids recorded in a state
# folder so that stopping them never guesses by name.

FKS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FKS_PG_BIN=${FKS_PG_BIN:-/usr/lib/postgresql/15/bin}

# Debian packages needed to build, run and test FKS (README.md says what each is for).
FKS_PACKAGES_BUILD="meson ninja-build pkg-config gcc libzmq3-dev libczmq-dev libpq-dev
  libhiredis-dev libmsgpack-dev libcivetweb-dev libssl-dev libjansson-dev libcurl4-openssl-dev"
FKS_PACKAGES_RUN="postgresql redis-server openssl"
FKS_PACKAGES_TEST="libcriterion-dev clang python3 python3-msgpack python3-zmq prometheus
  prometheus-alertmanager yamllint wrk curl"

fks_say() { printf '%s\n' "$*" >&2; }
fks_die() { printf 'fks: %s\n' "$*" >&2; exit 1; }

fks_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fks_die "need root (or sudo) to run: $*"
  fi
}

# fks_install_deps PKG... : installs the Debian packages that are missing, and only those.
fks_install_deps() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  fks_say "installing Debian packages: ${missing[*]}"
  fks_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || fks_die "apt-get update failed"
  fks_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || fks_die "apt-get install failed for: ${missing[*]}"
}

# fks_build DIR [meson options...] : configures (once) and builds FKS in DIR.
fks_build() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$FKS_ROOT" "$@" >"$dir.setup.log" 2>&1 \
      || { cat "$dir.setup.log" >&2; fks_die "meson setup $dir failed"; }
  fi
  ninja -C "$dir" >"$dir.build.log" 2>&1 \
    || { tail -n 60 "$dir.build.log" >&2; fks_die "build in $dir failed (full log: $dir.build.log)"; }
}

# fks_port_free PORT : true when nothing listens on 127.0.0.1:PORT.
fks_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# fks_free_port : prints a free loopback port in 20000-31999, below the kernel's ephemeral
# range (read from /proc when it starts lower), where no outgoing connection can take the
# port between this check and the server's bind (tests/lib/ports.c uses the same range).
fks_free_port() {
  local p i low=32768 high=32000
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  [ "$low" -gt 20100 ] && [ "$low" -lt "$high" ] && high=$low
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % (high - 20000) ))
    if fks_port_free "$p"; then echo "$p"; return 0; fi
  done
  fks_die "no free port found"
}

# PostgreSQL runs as `postgres` when we are root (initdb refuses root), else as ourselves.
fks_pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
fks_as_pg() {
  if [ "$(id -u)" = 0 ]; then
    local cmd="" a
    for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
    su postgres -s /bin/sh -c "$cmd"
  else "$@"
  fi
}

# fks_pg_dir_usable DIR : true when the PostgreSQL user can reach (traverse into) DIR.
fks_pg_dir_usable() {
  [ "$(id -u)" != 0 ] && return 0
  su postgres -s /bin/sh -c "test -x $(printf '%q' "$1") && test -w $(printf '%q' "$1")"
}

# fks_pg_start DIR PORT [PASSWORD] : creates a cluster in DIR/data on first use and starts it
# (FKS_PG_FSYNC=off, and FKS_PG_OPTS: more server options, e.g. "-c shared_preload_libraries=...")
# on 127.0.0.1:PORT (socket in DIR). With a PASSWORD, the `postgres` role gets it and every
# connection must authenticate (scram-sha-256); without, the cluster trusts loopback (tests).
fks_pg_start() {
  local dir=$1 port=$2 pass=${3:-}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown "$(fks_pg_user)" "$dir"
  chmod 700 "$dir"
  fks_pg_dir_usable "$dir" || fks_die "PostgreSQL's user cannot reach $dir (a parent folder is not searchable by 'postgres')"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if [ -n "$pass" ]; then
      local pwfile="$dir/.pw"
      ( umask 077; printf '%s\n' "$pass" >"$pwfile" )
      [ "$(id -u)" = 0 ] && chown "$(fks_pg_user)" "$pwfile"
      fks_as_pg "$FKS_PG_BIN/initdb" -D "$dir/data" -U postgres -A scram-sha-256 \
        --pwfile="$pwfile" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { rm -f "$pwfile"; cat "$dir/initdb.log" >&2; fks_die "initdb failed"; }
      rm -f "$pwfile"
    else
      fks_as_pg "$FKS_PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; fks_die "initdb failed"; }
    fi
  fi
  if fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    return 0
  fi
  fks_port_free "$port" || fks_die "port $port (PostgreSQL) is already in use"
  fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=${FKS_PG_FSYNC:-on} ${FKS_PG_OPTS:-}" \
    start >/dev/null || { tail -n 30 "$dir/postgresql.log" >&2; fks_die "PostgreSQL did not start"; }
}

# fks_pg_stop DIR : fast shutdown of the cluster in DIR/data, if running.
fks_pg_stop() {
  local dir=$1
  [ -f "$dir/data/PG_VERSION" ] || return 0
  fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 0
  fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
    || fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
}

# fks_redis_start DIR PORT [PASSWORD] : a Redis on 127.0.0.1:PORT with AOF on, data in DIR.
fks_redis_start() {
  local dir=$1 port=$2 pass=${3:-}
  mkdir -p "$dir"; chmod 700 "$dir"
  if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then return 0; fi
  fks_port_free "$port" || fks_die "port $port (Redis) is already in use"
  ( umask 077
    {
      echo "bind 127.0.0.1"
      echo "port $port"
      echo "dir $dir"
      echo "daemonize yes"
      echo "pidfile $dir/redis.pid"
      echo "logfile $dir/redis.log"
      echo "appendonly yes"
      echo "appendfsync everysec"
      echo "save \"\""
      if [ -n "$pass" ]; then echo "requirepass $pass"; fi
    } >"$dir/redis.conf" )
  redis-server "$dir/redis.conf" || fks_die "Redis did not start (see $dir/redis.log)"
  local i
  for i in $(seq 1 100); do
    [ -f "$dir/redis.pid" ] && ! fks_port_free "$port" && return 0
    sleep 0.05
  done
  fks_die "Redis did not start listening on $port (see $dir/redis.log)"
}

fks_redis_stop() {
  local dir=$1
  [ -f "$dir/redis.pid" ] && fks_kill_pidfile "$dir/redis.pid" redis
  return 0
}

# fks_terminate SECONDS NAME:PID... : SIGTERM to every process, in the order given, then waits
# for all of them together; what still runs after SECONDS gets SIGKILL. So stopping several
# takes as long as the slowest, not the sum.
fks_terminate() {
  local secs=$1 entry pid i left; shift
  local -a alive=()
  for entry in "$@"; do
    pid=${entry##*:}
    case $pid in ''|*[!0-9]*) continue ;; esac
    kill -TERM "$pid" 2>/dev/null && alive+=("$entry")
  done
  for i in $(seq 1 $((secs * 10))); do
    left=()
    for entry in "${alive[@]}"; do kill -0 "${entry##*:}" 2>/dev/null && left+=("$entry"); done
    alive=("${left[@]}")
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  for entry in "${alive[@]}"; do
    fks_say "${entry%:*} (${entry##*:}) did not stop on SIGTERM in $secs s: SIGKILL"
    kill -KILL "${entry##*:}" 2>/dev/null
  done
  return 0
}

# fks_kill_pidfile FILE NAME : SIGTERM the process in FILE, wait up to 10 s, then SIGKILL.
fks_kill_pidfile() {
  local file=$1 name=$2 pid
  pid=$(cat "$file" 2>/dev/null) || return 0
  case $pid in ''|*[!0-9]*) rm -f "$file"; return 0 ;; esac
  fks_terminate 10 "$name:$pid"
  rm -f "$file"
}

# fks_start_program STATE NAME LOG BINARY [ARGS...] : starts a program in the background with
# the current environment, records its pid in STATE/pids/NAME.pid.
fks_start_program() {
  local state=$1 name=$2 log=$3; shift 3
  mkdir -p "$state/pids"
  if [ -f "$state/pids/$name.pid" ] && kill -0 "$(cat "$state/pids/$name.pid")" 2>/dev/null; then
    fks_say "$name already running (pid $(cat "$state/pids/$name.pid"))"
    return 0
  fi
  nohup "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$state/pids/$name.pid"
}

# fks_stop_programs STATE : stops every program recorded in STATE/pids. SIGTERM goes to the
# gateway(s), the workers and every other program at once and they are waited for together
# (up to 15 s, then SIGKILL); the bus gets its SIGTERM once they are gone, so the workers'
# last acks and publishes of their drain reach it (up to FKS_BUS_DRAIN_TIMEOUT, 10 s, then
# SIGKILL). Stopping takes about as long as the slowest worker plus the bus, not the sum of all.
fks_stop_programs() {
  local state=$1 f name pid
  local -a first=() middle=() last=()
  [ -d "$state/pids" ] || return 0
  for f in "$state/pids"/*.pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid)
    pid=$(cat "$f" 2>/dev/null) || pid=""
    case $name in
      gateway*) first+=("$name:$pid") ;;
      bus*) last+=("$name:$pid") ;;
      *) middle+=("$name:$pid") ;;
    esac
  done
  fks_terminate 15 "${first[@]}" "${middle[@]}"
  fks_terminate 15 "${last[@]}"
  rm -f "$state/pids"/*.pid
}

# fks_wait_http URL SECONDS : waits until URL answers 200.
fks_wait_http() {
  local url=$1 secs=$2 i
  for i in $(seq 1 $((secs * 10))); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# fks_secret : 32 random bytes as 64 hex characters, from OpenSSL's CSPRNG.
fks_secret() { openssl rand -hex 32; }

# PostgreSQL alone, for the benchmarks' raw limits (tools/bench_pipeline_db.sql).
# fks_bench_raw_db PORT BUILD LOG : creates and migrates the database fks_raw on the server at
# PORT (a database of its own, so that no FKS process sees its rows), adds what the script
# needs, and prints its URL.
fks_bench_raw_db() {
  local port=$1 build=$2 log=$3 url="postgresql://postgres@127.0.0.1:$1/fks_raw"
  psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE fks_raw" \
    postgres >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  FKS_PG_URL=$url "$build/tools/fks" migrate >>"$log" 2>&1 || { cat "$log" >&2; return 1; }
  psql -q -v ON_ERROR_STOP=1 "$url" >>"$log" 2>&1 <<'EOSQL' || { cat "$log" >&2; return 1; }
CREATE FUNCTION fks_bench_v7 () RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode (overlay (uuid_send (gen_random_uuid ())
                          placing substring (int8send ((extract (epoch FROM clock_timestamp ())
                                                        * 1000)::bigint << 16) FROM 1 FOR 6)
                          FROM 1 FOR 6), 'hex')::uuid $$;
INSERT INTO positions (symbol) SELECT 'RAW' || g FROM generate_series (0, 255) g;
EOSQL
  # Some rows and fresh statistics first, so that the measured runs' prepared statements are
  # planned for tables that are not empty.
  (cd /tmp && "$FKS_PG_BIN/pgbench" -n -M extended -c 4 -j "$(nproc)" -T 3 -D batch=64 \
     -D gateway_only=0 -f "$FKS_ROOT/tools/bench_pipeline_db.sql" "$url") >>"$log" 2>&1 \
    && psql -q -c "ANALYZE" "$url" >>"$log" 2>&1 || { cat "$log" >&2; return 1; }
  echo "$url"
}

# fks_bench_raw_done URL : after the raw runs, drops fks_raw and checkpoints, so that the WAL
# they wrote does not start a checkpoint in the middle of the runs measured next.
fks_bench_raw_done() {
  local admin=${1%/fks_raw}/postgres
  psql -q -c "DROP DATABASE fks_raw" "$admin" >/dev/null 2>&1
  psql -q -c "CHECKPOINT" "$admin" >/dev/null 2>&1
}

# fks_pgbench_log_ms DIR : "p50 p99 max" in ms of the transactions in the pgbench logs
# (--log) in DIR.
fks_pgbench_log_ms() {
  cat "$1"/pgbench_log.* | awk '{print $3}' | sort -n \
    | awk '{a[NR] = $1} END {printf "%.2f %.2f %.2f\n", a[int(NR * 0.5) + 1] / 1000,
                                    a[int(NR * 0.99) + 1] / 1000, a[NR] / 1000}'
}

# fks_bench_raw_run URL STAGES BATCH CLIENTS SECONDS [RATE] : runs tools/bench_pipeline_db.sql
# with prepared statements (STAGES: "gateway" for the gateway's writes only, "all" for the three
# stages) as fast as it goes and prints "alerts/s ms-per-run", or at RATE alerts/s and prints
# "p50 p99 max" of a run's time in ms (from its scheduled start, so waiting counts).
fks_bench_raw_run() {
  local url=$1 only=0 rate=${6:-} out tps lat dir
  [ "$2" = gateway ] && only=1
  dir=$(mktemp -d /tmp/fks-raw.XXXXXX)
  out=$(cd "$dir" && "$FKS_PG_BIN/pgbench" -n -M prepared -c "$4" -j "$(nproc)" -T "$5" \
          ${rate:+-R "$(awk -v r="$rate" -v b="$3" 'BEGIN {printf "%.3f", r / b}')" --log} \
          -D batch="$3" -D gateway_only="$only" -f "$FKS_ROOT/tools/bench_pipeline_db.sql" \
          "$url" 2>&1) || { echo "$out" | tail -n 5 >&2; rm -rf "$dir"; return 1; }
  if [ -n "$rate" ]; then
    fks_pgbench_log_ms "$dir"
  else
    tps=$(awk '/^tps/ {print $3}' <<<"$out")
    lat=$(awk '/^latency average/ {print $4}' <<<"$out")
    echo "$(awk -v t="$tps" -v b="$3" 'BEGIN {printf "%.0f", t * b}') $lat"
  fi
  rm -rf "$dir"
}
