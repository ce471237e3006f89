#!/usr/bin/env bash
# tools/bench_gateway.sh - how fast fks-gateway accepts webhooks durably, next to bare civetweb.
#
# Starts, in a temporary folder, a private PostgreSQL (fsync on, as in production), Redis, the
# bus and fks-gateway, plus bench-civetweb (a bare civetweb handler configured like the
# gateway), and drives POST /webhook/tradingview with wrk: 32 connections with keep-alive, then
# again with "Connection: close" as TradingView sends them. Every request carries a distinct
# alert, so every 2xx is a new inbox row committed before the answer. The same run measures the
# bare handler, PostgreSQL's own single-row commit rate (pgbench) and PostgreSQL alone writing
# the gateway's rows in batches (tools/bench_pipeline_db.sql), and after the gateway's runs
# PostgreSQL alone's commit latency for those rows at the gateway's own rate and mean batch, so
# the figures compare on one machine. It checks that the inbox holds exactly the accepted alerts, prints a table
# (docs/PERFORMANCE.md keeps the recorded ones) and the verdict against the target:
# durable keep-alive accepts >= half the bare rate, p99 < 5 ms.
#
#   tools/bench_gateway.sh                 10 s per run
#   FKS_BENCH_SECONDS=30 tools/bench_gateway.sh
#   FKS_BENCH_FSYNC=off tools/bench_gateway.sh   PostgreSQL without fsync: shows what the gateway
#                                                and the database's CPU allow when the disk's
#                                                flush latency is taken away (not durable)
#   FKS_BENCH_COMMITTERS=N, FKS_BENCH_CONNECTIONS=N  change the committers / wrk connections
set -uo pipefail      # not -e: lib.sh's helpers end in tests that may be false
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${FKS_BENCH_SECONDS:-10}
FSYNC=${FKS_BENCH_FSYNC:-on}
CONNS=${FKS_BENCH_CONNECTIONS:-32}
COMMITTERS=${FKS_BENCH_COMMITTERS:-2}
BUILD=${FKS_BUILD_DIR:-$FKS_ROOT/build}

command -v wrk >/dev/null || fks_die "wrk is needed (apt-get install wrk)"
fks_build "$BUILD"
for b in gateway/fks-gateway bus/fks-bus tools/fks tools/bench-civetweb; do
  [ -x "$BUILD/$b" ] || fks_die "$BUILD/$b is missing"
done

TMP=$(mktemp -d /tmp/fks-bench.XXXXXX)
chmod 755 "$TMP"
cleanup() {
  fks_stop_programs "$TMP"
  fks_redis_stop "$TMP/redis"
  fks_pg_stop "$TMP/pg"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PG_PORT=$(fks_free_port)
FKS_PG_FSYNC=$FSYNC fks_pg_start "$TMP/pg" "$PG_PORT"
REDIS_PORT=$(fks_free_port)
fks_redis_start "$TMP/redis" "$REDIS_PORT"
export FKS_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export FKS_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$BUILD/tools/fks" migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log"; fks_die "migrate failed"; }

BUS_PORT=$(fks_free_port); BUS_HTTP=$(fks_free_port); BUS_STREAM=$(fks_free_port)
GW_PORT=$(fks_free_port); BARE_PORT=$(fks_free_port)
export FKS_ENV=bench FKS_LOG_LEVEL=warn FKS_HTTP_BIND=127.0.0.1
export FKS_BUS_BIND=tcp://127.0.0.1:$BUS_PORT FKS_BUS_STREAM_BIND=tcp://127.0.0.1:$BUS_STREAM
export FKS_BUS_URL=$FKS_BUS_BIND FKS_BUS_STREAM_URL=$FKS_BUS_STREAM_BIND FKS_BUS_PORT=$BUS_HTTP
export FKS_WEBHOOK_SECRET=$(fks_secret) FKS_ADMIN_KEY=$(fks_secret)
export FKS_GATEWAY_PORT=$GW_PORT FKS_GATEWAY_COMMITTERS=$COMMITTERS
# The limiter runs (and syncs with Redis) but the limit is out of reach.
export FKS_GATEWAY_RATE_LIMIT_IP=1000000000
fks_start_program "$TMP" bus "$TMP/bus.log" "$BUILD/bus/fks-bus"
fks_wait_http "http://127.0.0.1:$BUS_HTTP/health" 20 || fks_die "fks-bus did not start"
fks_start_program "$TMP" gateway "$TMP/gateway.log" "$BUILD/gateway/fks-gateway"
fks_wait_http "http://127.0.0.1:$GW_PORT/health" 20 || { cat "$TMP/gateway.log"; fks_die "fks-gateway did not start"; }
fks_start_program "$TMP" bare "$TMP/bare.log" "$BUILD/tools/bench-civetweb" "$BARE_PORT" 64
sleep 0.5

# Distinct alerts: a per-thread random prefix and a counter make every client id unique.
cat >"$TMP/post.lua" <<'EOF'
local counter, tid, prefix = 0, 0, ""
local close = os.getenv("BENCH_CLOSE") == "1"
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  math.randomseed(os.time() * 1000 + tid)
  prefix = string.format("%x%x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end
function request()
  counter = counter + 1
  local body = '{"ticker":"BTCUSDT","action":"buy","contracts":"0.01","price":"42000",' ..
               '"strategy":"bench","id":"' .. prefix .. "-" .. tid .. "-" .. counter ..
               '","passphrase":"' .. os.getenv("FKS_WEBHOOK_SECRET") .. '"}'
  local headers = {["Content-Type"] = "application/json"}
  if close then headers["Connection"] = "close" end
  return wrk.format("POST", "/webhook/tradingview", headers, body)
end
EOF

# run NAME PORT CLOSE : one wrk run; prints "rate p50 p99 non2xx errors".
run() {
  local name=$1 port=$2 close=$3 out="$TMP/wrk-$1.txt"
  BENCH_CLOSE=$close wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "$TMP/post.lua" \
    "http://127.0.0.1:$port/webhook/tradingview" >"$out" 2>&1 || true
  local rate p50 p99 non2xx errs
  rate=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors/ {print $0}' "$out" | sed 's/.*Socket errors: //'); errs=${errs:-none}
  printf '%s|%s|%s|%s|%s\n' "${rate:-0}" "${p50:-?}" "${p99:-?}" "$non2xx" "$errs"
}

# PostgreSQL's own durable commit rate on this disk, for context (the TOOLCHAIN.md baseline).
echo 'INSERT INTO security_events (id, kind) VALUES (gen_random_uuid (), $$bench.baseline$$);' \
  >"$TMP/pgbench.sql"
PGB=$("$FKS_PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -f "$TMP/pgbench.sql" \
        -c 32 -j 2 -T 5 postgres 2>/dev/null | awk '/^tps/ {print $3}')
# One client: each commit waits for its own flush, so its latency is the disk's (p50 p99 max).
mkdir -p "$TMP/pgb1"
PGB1=$(cd "$TMP/pgb1" && "$FKS_PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n \
         -f "$TMP/pgbench.sql" -c 1 -T 3 --log postgres 2>/dev/null | awk '/^latency average/ {print $4}')
PGB1_PCT=$(fks_pgbench_log_ms "$TMP/pgb1")

# The gateway's own writes without the gateway: an inbox row and its webhook.received outbox
# row per alert, in batches, committed by 4 pgbench clients (tools/bench_pipeline_db.sql with
# gateway_only; a database of its own). FKS_BENCH_DB_BATCHES ("16 64"; "" skips it).
RAW=()
if [ -n "${FKS_BENCH_DB_BATCHES-16 64}" ]; then
  RAW_URL=$(fks_bench_raw_db "$PG_PORT" "$BUILD" "$TMP/raw.log") || fks_die "fks_raw set-up failed"
  for b in ${FKS_BENCH_DB_BATCHES-16 64}; do
    fks_say "PostgreSQL alone: the gateway's writes in batches of $b, 4 clients, 5s ..."
    r=$(fks_bench_raw_run "$RAW_URL" gateway "$b" 4 5) || fks_die "pgbench failed"
    RAW+=("$b $r")
  done
  fks_bench_raw_done "$RAW_URL"
fi

fks_say "warming up ..."
SECONDS_SAVE=$SECONDS_PER_RUN; SECONDS_PER_RUN=3
run warm "$GW_PORT" 0 >/dev/null; run warmbare "$BARE_PORT" 0 >/dev/null
SECONDS_PER_RUN=$SECONDS_SAVE
accepted_before=$(curl -s "http://127.0.0.1:$GW_PORT/metrics" | awk '$1 == "fks_gateway_webhooks_total{result=\"accepted\"}" {print $2}')

fks_say "measuring (${SECONDS_PER_RUN}s per run, $CONNS connections, fsync=$FSYNC, $COMMITTERS committers) ..."
BARE_KA=$(run bare-ka "$BARE_PORT" 0)
batches() { curl -s "http://127.0.0.1:$GW_PORT/metrics" \
              | awk '$1 == "fks_gateway_inbox_batch_size_sum" {s = $2}
                     $1 == "fks_gateway_inbox_batch_size_count" {n = $2} END {print s + 0, n + 0}'; }
read -r ka_sum0 ka_n0 <<<"$(batches)"
GW_KA=$(run gw-ka "$GW_PORT" 0)
read -r ka_sum1 ka_n1 <<<"$(batches)"
KA_BATCH=$(awk -v s=$((ka_sum1 - ka_sum0)) -v n=$((ka_n1 - ka_n0)) 'BEGIN {printf "%.1f", (n > 0 ? s / n : 0)}')
BARE_CL=$(run bare-close "$BARE_PORT" 1)
GW_CL=$(run gw-close "$GW_PORT" 1)

sleep 1      # requests cut off by wrk's end still commit and count: let them finish
metrics=$(curl -s "http://127.0.0.1:$GW_PORT/metrics")
accepted=$(awk '$1 == "fks_gateway_webhooks_total{result=\"accepted\"}" {print $2}' <<<"$metrics")
batch_sum=$(awk '$1 == "fks_gateway_inbox_batch_size_sum" {print $2}' <<<"$metrics")
batch_n=$(awk '$1 == "fks_gateway_inbox_batch_size_count" {print $2}' <<<"$metrics")
rows=$(psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "SELECT count(*) FROM inbox" postgres)
events=$(psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres \
           -c "SELECT count(*) FROM events WHERE type = 'webhook.received'" postgres)

field() { cut -d'|' -f"$2" <<<"$1"; }

# PostgreSQL alone committing the gateway's rows at the rate the gateway reached with
# keep-alive, in fixed batches of its mean keep-alive batch, from as many clients as it has
# committers (no gateway, no wrk): what the commits themselves take at that rate. Not a strict
# floor: the gateway's batches grow while a commit is slow, pgbench's stay fixed and queue.
RAW_LAT=""
if [ -n "${FKS_BENCH_DB_BATCHES-16 64}" ]; then
  ka_rate=$(field "$GW_KA" 1); ka_rate=${ka_rate%.*}
  lat_batch=$(awk -v b="$KA_BATCH" 'BEGIN {b = int (b + 0.5); print (b < 1 ? 1 : b)}')
  if [ "${ka_rate:-0}" -gt 0 ]; then
    RAW_URL=$(fks_bench_raw_db "$PG_PORT" "$BUILD" "$TMP/raw2.log") || fks_die "fks_raw set-up failed"
    fks_say "PostgreSQL alone: the gateway's writes at $ka_rate alerts/s in batches of $lat_batch, $COMMITTERS clients, 5s ..."
    r=$(fks_bench_raw_run "$RAW_URL" gateway "$lat_batch" "$COMMITTERS" 5 "$ka_rate") || fks_die "pgbench failed"
    RAW_LAT="$ka_rate $lat_batch $r"
    fks_bench_raw_done "$RAW_URL"
  fi
fi
ratio=$(awk -v g="$(field "$GW_KA" 1)" -v b="$(field "$BARE_KA" 1)" 'BEGIN {printf "%.2f", (b > 0 ? g / b : 0)}')
ratio_cl=$(awk -v g="$(field "$GW_CL" 1)" -v b="$(field "$BARE_CL" 1)" 'BEGIN {printf "%.2f", (b > 0 ? g / b : 0)}')
p99_ms=$(field "$GW_KA" 3 | awk '{v=$1; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}')
verdict=PASS
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.5)}' || verdict=FAIL
awk -v p="$p99_ms" 'BEGIN {exit !(p < 5)}' || verdict=FAIL

cat <<EOF

## fks-gateway webhook benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))

wrk -t2 -c$CONNS -d${SECONDS_PER_RUN}s, one distinct alert per request; PostgreSQL 15 fsync=$FSYNC,
$COMMITTERS committers, log level warn, rate limiter on (limit out of reach), bus publishing on.
PostgreSQL alone on this disk: $PGB single-row commits/s at 32 clients (pgbench), ${PGB1} ms per
commit with one client (p50 p99 max: $PGB1_PCT ms).

| run | requests/s | p50 | p99 | non-2xx | socket errors |
| --- | ---: | ---: | ---: | ---: | --- |
| bare civetweb, keep-alive | $(field "$BARE_KA" 1) | $(field "$BARE_KA" 2) | $(field "$BARE_KA" 3) | $(field "$BARE_KA" 4) | $(field "$BARE_KA" 5) |
| fks-gateway, keep-alive (durable) | $(field "$GW_KA" 1) | $(field "$GW_KA" 2) | $(field "$GW_KA" 3) | $(field "$GW_KA" 4) | $(field "$GW_KA" 5) |
| bare civetweb, Connection: close | $(field "$BARE_CL" 1) | $(field "$BARE_CL" 2) | $(field "$BARE_CL" 3) | $(field "$BARE_CL" 4) | $(field "$BARE_CL" 5) |
| fks-gateway, Connection: close (durable) | $(field "$GW_CL" 1) | $(field "$GW_CL" 2) | $(field "$GW_CL" 3) | $(field "$GW_CL" 4) | $(field "$GW_CL" 5) |

gateway / bare: $ratio with keep-alive, $ratio_cl with Connection: close.
$(for r in "${RAW[@]}"; do read -r b a l <<<"$r"; echo "PostgreSQL alone, the gateway's writes (inbox + outbox row) in batches of $b, 4 clients: $a alerts/s ($l ms per commit); fks-gateway keep-alive / this: $(awk -v g="$(field "$GW_KA" 1)" -v a="$a" 'BEGIN {printf "%.2f", (a > 0 ? g / a : 0)}')."; done)
$([ -n "$RAW_LAT" ] && read -r lr lb l50 l99 lmax <<<"$RAW_LAT" && echo "PostgreSQL alone, the gateway's writes at $lr alerts/s in batches of $lb (the gateway's keep-alive rate and mean batch $KA_BATCH), $COMMITTERS clients: commit p50 $l50 ms, p99 $l99 ms, max $lmax ms.")
Alerts accepted during the measured runs: $(( ${accepted%.*} - ${accepted_before%.*} )); inbox rows in all: $rows
(webhook.received events: $events); mean batch $(awk -v s="$batch_sum" -v n="$batch_n" 'BEGIN {printf "%.1f", (n > 0 ? s / n : 0)}') alerts per commit.
Target (durable keep-alive >= 0.5 x bare, p99 < 5 ms): $verdict
EOF
[ "$rows" = "$events" ] && [ "$rows" = "${accepted%.*}" ] \
  || { echo "MISMATCH: accepted ${accepted} but $rows inbox rows and $events events" >&2; exit 1; }
