#!/usr/bin/env bash
# tools/bench_pipeline.sh - alerts end to end: from the gateway's 202 to a filled paper order.
#
# Starts, in a temporary folder, a private PostgreSQL (fsync on, as in production), Redis,
# fks-bus, fks-gateway, fks-signal and fks-execution, and posts distinct TradingView alerts to
# POST /webhook/tradingview with wrk at fixed rates (a Lua script paces every connection).
# Every alert is a market order on one of 8 symbols, half buys and half sells, so every one
# ends as a filled order, a fill and a position change.
#
#   0. PostgreSQL alone (the raw limit): tools/bench_pipeline_db.sql, with pgbench, writes the
#      rows FKS writes for an alert, in batches, before any FKS process starts.
#   1. Latency: FKS_BENCH_LATENCY_RATE alerts/s (1000) for FKS_BENCH_SECONDS (10): the time
#      from the gateway's webhook.received envelope (made when the alert is accepted) to the
#      execution worker's order.filled, read from the events table, p50 / p99 / max.
#   2. Sustained rate: each rate of FKS_BENCH_RATES ("1000 2000 3000 4000 5000") for
#      FKS_BENCH_SECONDS; a rate is sustained when the gateway accepted at least 95 % of it
#      and the backlog (alerts accepted but not yet in a final state) at the end of the run is
#      under half a second of input, i.e. the workers kept up. The pipeline drains between
#      rates.
#
# It checks that every accepted alert became exactly one filled order with one fill, and that
# every position equals the sum of its fills, then prints a table (docs/PERFORMANCE.md
# keeps the recorded ones). Other settings: FKS_BENCH_FSYNC=off (PostgreSQL without fsync),
# FKS_BENCH_SIGNAL_REPLICAS / FKS_BENCH_EXECUTION_REPLICAS (1), FKS_WORKER_THREADS (2),
# FKS_WORKER_BATCH (64), FKS_BUILD_DIR (build), FKS_BENCH_PGSS=1 (PostgreSQL's time per
# statement during the latency run, from pg_stat_statements), FKS_BENCH_PG_OPTS (more server
# options), FKS_BENCH_LOGS=DIR (keep the logs), FKS_BENCH_DB_BATCHES / FKS_BENCH_DB_CLIENTS
# (PostgreSQL alone, see step 0).
set -uo pipefail      # not -e: lib.sh's helpers end in tests that may be false
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${FKS_BENCH_SECONDS:-10}
RATES=${FKS_BENCH_RATES:-1000 2000 3000 4000 5000}
LAT_RATE=${FKS_BENCH_LATENCY_RATE:-1000}
FSYNC=${FKS_BENCH_FSYNC:-on}
SIGNALS=${FKS_BENCH_SIGNAL_REPLICAS:-1}
EXECUTIONS=${FKS_BENCH_EXECUTION_REPLICAS:-1}
BUILD=${FKS_BUILD_DIR:-$FKS_ROOT/build}

command -v wrk >/dev/null || fks_die "wrk is needed (apt-get install wrk)"
fks_build "$BUILD"
for b in gateway/fks-gateway bus/fks-bus tools/fks workers/fks-signal workers/fks-execution; do
  [ -x "$BUILD/$b" ] || fks_die "$BUILD/$b is missing"
done

TMP=$(mktemp -d /tmp/fks-bench-pipeline.XXXXXX)
chmod 755 "$TMP"
cleanup() {
  fks_stop_programs "$TMP"
  # FKS_BENCH_LOGS=DIR keeps the programs' and PostgreSQL's logs there.
  [ -n "${FKS_BENCH_LOGS:-}" ] && mkdir -p "$FKS_BENCH_LOGS" \
    && cp "$TMP"/*.log "$TMP"/pg/postgresql.log "$FKS_BENCH_LOGS"/ 2>/dev/null
  fks_redis_stop "$TMP/redis"
  fks_pg_stop "$TMP/pg"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PG_PORT=$(fks_free_port)
PGSS=${FKS_BENCH_PGSS:-0}
pg_opts=""
[ "$PGSS" = 1 ] && pg_opts="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on"
pg_opts="$pg_opts ${FKS_BENCH_PG_OPTS:-}"     # e.g. auto_explain settings
FKS_PG_OPTS=$pg_opts FKS_PG_FSYNC=$FSYNC fks_pg_start "$TMP/pg" "$PG_PORT"
REDIS_PORT=$(fks_free_port)
fks_redis_start "$TMP/redis" "$REDIS_PORT"
export FKS_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export FKS_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$BUILD/tools/fks" migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log"; fks_die "migrate failed"; }
sql() { psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$1" postgres; }

# 0. PostgreSQL alone, before FKS starts, in a database of its own (the reconciler must not
# see these rows): tools/bench_pipeline_db.sql writes what FKS writes for a batch of alerts,
# stage by stage, from FKS_BENCH_DB_CLIENTS pgbench clients (4) for each batch size of
# FKS_BENCH_DB_BATCHES ("16 64"; "" skips it), then the time of the three commits at the
# latency run's rate in batches of FKS_BENCH_DB_LATENCY_BATCH (8; from 8 pgbench clients, the
# workers' batches at 1,000/s being 3-9). The raw limits the pipeline is compared with.
DB_BATCHES=${FKS_BENCH_DB_BATCHES-16 64}
DB_CLIENTS=${FKS_BENCH_DB_CLIENTS:-4}
DB_LAT_BATCH=${FKS_BENCH_DB_LATENCY_BATCH:-8}
RAW=()
RAW_LAT=""
if [ -n "$DB_BATCHES" ]; then
  [ -x "$FKS_PG_BIN/pgbench" ] || fks_die "$FKS_PG_BIN/pgbench is missing"
  RAW_URL=$(fks_bench_raw_db "$PG_PORT" "$BUILD" "$TMP/raw.log") || fks_die "fks_raw set-up failed"
  for b in $DB_BATCHES; do
    fks_say "PostgreSQL alone: batches of $b alerts, $DB_CLIENTS clients, ${SECONDS_PER_RUN}s ..."
    r=$(fks_bench_raw_run "$RAW_URL" all "$b" "$DB_CLIENTS" "$SECONDS_PER_RUN") \
      || fks_die "pgbench failed"
    RAW+=("$b $r")
  done
  fks_say "PostgreSQL alone: $LAT_RATE alerts/s in batches of $DB_LAT_BATCH, ${SECONDS_PER_RUN}s ..."
  RAW_LAT=$(fks_bench_raw_run "$RAW_URL" all "$DB_LAT_BATCH" 8 "$SECONDS_PER_RUN" "$LAT_RATE") \
    || fks_die "pgbench failed"
  fks_bench_raw_done "$RAW_URL"
fi

BUS_PORT=$(fks_free_port); BUS_HTTP=$(fks_free_port); BUS_STREAM=$(fks_free_port)
GW_PORT=$(fks_free_port)
export FKS_ENV=bench FKS_LOG_LEVEL=warn FKS_HTTP_BIND=127.0.0.1
export FKS_BUS_BIND=tcp://127.0.0.1:$BUS_PORT FKS_BUS_STREAM_BIND=tcp://127.0.0.1:$BUS_STREAM
export FKS_BUS_URL=$FKS_BUS_BIND FKS_BUS_STREAM_URL=$FKS_BUS_STREAM_BIND FKS_BUS_PORT=$BUS_HTTP
export FKS_WEBHOOK_SECRET=$(fks_secret) FKS_ADMIN_KEY=$(fks_secret)
export FKS_GATEWAY_PORT=$GW_PORT
# The limiter runs (and syncs with Redis) but the limit is out of reach.
export FKS_GATEWAY_RATE_LIMIT_IP=1000000000 FKS_GATEWAY_RATE_LIMIT_KEY=1000000000
fks_start_program "$TMP" bus "$TMP/bus.log" "$BUILD/bus/fks-bus"
fks_wait_http "http://127.0.0.1:$BUS_HTTP/health" 20 || { tail -n 20 "$TMP/bus.log"; fks_die "fks-bus did not start"; }
fks_start_program "$TMP" gateway "$TMP/gateway.log" "$BUILD/gateway/fks-gateway"
WORKER_PORTS=""        # "name port" per worker replica, for their /metrics
for i in $(seq 1 "$SIGNALS"); do
  port=$(fks_free_port); WORKER_PORTS="$WORKER_PORTS signal$i $port"
  FKS_SIGNAL_PORT=$port fks_start_program "$TMP" "signal$i" "$TMP/signal$i.log" \
    "$BUILD/workers/fks-signal"
done
for i in $(seq 1 "$EXECUTIONS"); do
  port=$(fks_free_port); WORKER_PORTS="$WORKER_PORTS execution$i $port"
  FKS_EXECUTION_PORT=$port fks_start_program "$TMP" "execution$i" \
    "$TMP/execution$i.log" "$BUILD/workers/fks-execution"
done
fks_wait_http "http://127.0.0.1:$GW_PORT/ready" 20 || { cat "$TMP/gateway.log"; fks_die "fks-gateway did not start"; }
sleep 1

# Distinct alerts at a fixed rate. Every wrk thread keeps a schedule of send times, one every
# 1000 / (RATE / threads) ms, and a connection that is free waits for the next slot (LuaJIT's
# ffi reads the monotonic clock): the offered rate does not depend on the answers' latency,
# as long as enough connections are open. A thread more than 100 ms behind drops that debt.
cat >"$TMP/post.lua" <<'EOF'
local ffi = require ("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } fks_timespec;
int clock_gettime (int clk, fks_timespec *ts);
]]
local ts = ffi.new ("fks_timespec")
local function now_ms ()
  ffi.C.clock_gettime (1, ts)
  return tonumber (ts.tv_sec) * 1000 + tonumber (ts.tv_nsec) / 1e6
end
local counter, tid, prefix = 0, 0, ""
local interval = 1000 / ((tonumber (os.getenv ("RATE")) or 1000) / 2)
local next_slot = nil
local symbols = { "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT",
                  "BNBUSDT", "LTCUSDT" }
local nthreads = 0
function setup (thread)
  nthreads = nthreads + 1
  thread:set ("tid", nthreads)
end
function init (args)
  tid = tonumber (wrk.thread:get ("tid")) or 0
  math.randomseed (os.time () * 1000 + tid)
  prefix = string.format ("%x%x", math.random (0, 0x7fffffff), math.random (0, 0x7fffffff))
end
function delay ()
  local t = now_ms ()
  if next_slot == nil or next_slot < t - 100 then next_slot = t end
  next_slot = next_slot + interval
  local d = next_slot - t
  return d > 0 and d or 0
end
function request ()
  counter = counter + 1
  local body = '{"ticker":"BINANCE:' .. symbols[counter % 8 + 1] .. '","action":"' ..
               (counter % 2 == 0 and "buy" or "sell") .. '","contracts":"0.01",' ..
               '"price":"100","strategy":"bench","id":"' .. prefix .. "-" .. tid .. "-" ..
               counter .. '","passphrase":"' .. os.getenv ("FKS_WEBHOOK_SECRET") .. '"}'
  return wrk.format ("POST", "/webhook/tradingview", {["Content-Type"] = "application/json"},
                     body)
end
EOF

# run RATE SECONDS : posts at RATE alerts/s; prints "requests/s p50 p99 non2xx".
run() {
  local rate=$1 secs=$2 out="$TMP/wrk-$1.txt"
  RATE=$rate wrk -t2 -c32 -d"${secs}s" --latency -s "$TMP/post.lua" \
    "http://127.0.0.1:$GW_PORT/webhook/tradingview" >"$out" 2>&1 || true
  awk '/Requests\/sec/ {r=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2}
       /Non-2xx/ {n=$NF} END {printf "%s %s %s %s\n", r, p50, p99, (n == "" ? 0 : n)}' "$out"
}

# backlog : alerts accepted and not yet in a final state.
backlog() { sql "SELECT count(*) FROM inbox WHERE status NOT IN ('filled', 'filtered', 'rejected', 'failed')"; }

# drain SECONDS : waits until the backlog is empty; prints the seconds it took.
drain() {
  local t0 i; t0=$(date +%s.%N)
  for i in $(seq 1 $(( $1 * 10 ))); do [ "$(backlog)" = 0 ] && break; sleep 0.1; done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'
}

# cpu_snapshot : "name ticks" per process of this run (utime + stime from /proc), the
# PostgreSQL postmaster and its backends summed as "postgres". Processes that exit between two
# snapshots (wrk, psql) are not counted.
cpu_snapshot() {
  local pm f pid name
  pm=$(head -n 1 "$TMP/pg/data/postmaster.pid" 2>/dev/null)
  declare -A who=()
  for f in "$TMP"/pids/*.pid; do who[$(cat "$f")]=$(basename "$f" .pid); done
  who[$(cat "$TMP/redis/redis.pid" 2>/dev/null || echo 0)]=redis
  for f in /proc/[0-9]*/stat; do
    pid=${f#/proc/}; pid=${pid%/stat}
    read -r line <"$f" 2>/dev/null || continue
    # fields after the command name: state ppid ... utime (12th) stime (13th)
    set -- ${line##*) }
    name=${who[$pid]:-}
    if [ "$pid" = "$pm" ] || [ "$2" = "$pm" ]; then name=postgres; fi
    [ -n "$name" ] && echo "$name $(( ${12} + ${13} ))"
  done | awk '{t[$1] += $2} END {for (n in t) print n, t[n]}' | sort
}

# cpu_report BEFORE AFTER ALERTS : CPU per alert and process between two snapshots.
cpu_report() {
  join <(echo "$1") <(echo "$2") | awk -v n="$3" -v hz="$(getconf CLK_TCK)" '
    { d = ($3 - $2) / hz; tot += d; line[NR] = sprintf ("%s %.3f", $1, 1000 * d / n) }
    END { for (i = 1; i <= NR; i++) printf "%s ms, ", line[i];
          printf "total %.3f ms", 1000 * tot / n }'
}

# batch_snapshot : "name batches seconds messages" per worker replica, from its /metrics
# (fks_worker_batch_seconds and fks_worker_batch_size, summed over groups).
batch_snapshot() {
  set -- $WORKER_PORTS
  while [ $# -ge 2 ]; do
    curl -s "http://127.0.0.1:$2/metrics" | awk -v n="$1" '
      /^fks_worker_batch_seconds_count/ { c += $NF } /^fks_worker_batch_seconds_sum/ { s += $NF }
      /^fks_worker_batch_size_sum/ { m += $NF }
      END { printf "%s %d %.6f %d\n", n, c, s, m }'
    shift 2
  done
}

# batch_report BEFORE AFTER : per replica, batches, mean messages and mean time per batch.
batch_report() {
  join <(echo "$1") <(echo "$2") | awk '
    { b = $5 - $2; if (b < 1) next
      printf "%s%s %d batches of %.1f messages, %.2f ms each (BEGIN to COMMIT)", sep, $1, b,
             ($7 - $4) / b, 1000 * ($6 - $3) / b; sep = "; " }'
}

fks_say "warming up ..."
run 500 3 >/dev/null
drain 120 >/dev/null

# 1. Latency at a fixed rate.
fks_say "latency at $LAT_RATE alerts/s for ${SECONDS_PER_RUN}s ..."
mark=$(sql "SELECT coalesce (max (seq), 0) FROM events")
if [ "$PGSS" = 1 ]; then
  sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  sql "SELECT pg_stat_statements_reset ()" >/dev/null
fi
cpu0=$(cpu_snapshot)
batch0=$(batch_snapshot)
LAT=$(run "$LAT_RATE" "$SECONDS_PER_RUN")
LAT_DRAIN=$(drain 120)
cpu1=$(cpu_snapshot)
BATCHES=$(batch_report "$batch0" "$(batch_snapshot)")
lat_alerts=$(sql "SELECT count(*) FROM events WHERE type = 'webhook.received' AND seq > $mark")
CPU=$(cpu_report "$cpu0" "$cpu1" "$lat_alerts")
E2E=$(sql "SELECT count(*), round ((percentile_cont (0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2),
                  round ((percentile_cont (0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2),
                  round (max (ms)::numeric, 2)
             FROM (SELECT extract (epoch FROM f.ts - w.ts) * 1000 AS ms
                     FROM events w JOIN events f ON f.corr = w.corr AND f.type = 'order.filled'
                    WHERE w.type = 'webhook.received' AND w.seq > $mark) x" | tr '|' ' ')
# The same alerts split by stage: accept -> signal.created (gateway, bus, signal worker) and
# signal.created -> order.filled (bus, execution worker).
STAGES=$(sql "SELECT string_agg (format ('%s p50 %s ms, p99 %s ms', stage, p50, p99), '; ')
                FROM (SELECT stage,
                             round ((percentile_cont (0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2) p50,
                             round ((percentile_cont (0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2) p99
                        FROM (SELECT 'accept -> signal.created' stage,
                                     extract (epoch FROM s.ts - w.ts) * 1000 ms
                                FROM events w JOIN events s ON s.corr = w.corr AND s.type = 'signal.created'
                               WHERE w.type = 'webhook.received' AND w.seq > $mark
                              UNION ALL
                              SELECT 'signal.created -> order.filled',
                                     extract (epoch FROM f.ts - s.ts) * 1000
                                FROM events s JOIN events f ON f.corr = s.corr AND f.type = 'order.filled'
                               WHERE s.type = 'signal.created' AND s.seq > $mark) x
                       GROUP BY stage ORDER BY stage) y")

# FKS_BENCH_PGSS=1: PostgreSQL's time per statement over the latency run, per alert.
PGSS_REPORT=""
if [ "$PGSS" = 1 ]; then
  PGSS_REPORT=$(sql "SELECT format ('| %s | %s | %s | %s | %s |', round ((total_exec_time * 1000 / $lat_alerts)::numeric, 1),
                                   round ((total_plan_time * 1000 / $lat_alerts)::numeric, 1),
                                   round ((calls::numeric / $lat_alerts), 3), round ((rows::numeric / greatest (calls, 1)), 1),
                                   left (regexp_replace (query, '\s+', ' ', 'g'), 110))
                       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'postgres')
                      ORDER BY total_exec_time + total_plan_time DESC LIMIT 20")
  PGSS_TOTAL=$(sql "SELECT format ('%s us executing, %s us planning', round ((sum (total_exec_time) * 1000 / $lat_alerts)::numeric, 1),
                           round ((sum (total_plan_time) * 1000 / $lat_alerts)::numeric, 1)) FROM pg_stat_statements")
  PGSS_JIT=$(sql "SELECT coalesce (string_agg (format ('%s calls JIT-compiled (%s ms) of: %s', jit_functions, round (jit_generation_time + jit_inlining_time + jit_optimization_time + jit_emission_time), left (regexp_replace (query, '\s+', ' ', 'g'), 90)), '; '), 'none')
                     FROM pg_stat_statements WHERE jit_functions > 0")
fi

# 2. Sustained rates.
RESULTS=()
best=0
for rate in $RATES; do
  fks_say "sustained: $rate alerts/s for ${SECONDS_PER_RUN}s ..."
  before=$(sql "SELECT count(*) FROM inbox")
  filled_before=$(sql "SELECT count(*) FROM orders WHERE status = 'filled'")
  r=$(run "$rate" "$SECONDS_PER_RUN")
  after=$(sql "SELECT count(*) FROM inbox")
  filled_after=$(sql "SELECT count(*) FROM orders WHERE status = 'filled'")
  left=$(backlog)
  took=$(drain 300)
  acc=$(( after - before ))
  acc_rate=$(awk -v a="$acc" -v s="$SECONDS_PER_RUN" 'BEGIN {printf "%.0f", a / s}')
  fill_rate=$(awk -v a="$(( filled_after - filled_before ))" -v s="$SECONDS_PER_RUN" 'BEGIN {printf "%.0f", a / s}')
  ok=no
  if awk -v a="$acc_rate" -v r="$rate" -v l="$left" 'BEGIN {exit !(a >= 0.95 * r && l <= r / 2)}'; then
    ok=yes; best=$rate
  fi
  RESULTS+=("| $rate | $acc_rate | $fill_rate | $left | $took | $(cut -d' ' -f3 <<<"$r") | $ok |")
done

# Consistency: one filled order and one fill per alert, positions equal to their fills.
alerts=$(sql "SELECT count(*) FROM inbox")
orders=$(sql "SELECT count(*) FROM orders WHERE status = 'filled'")
fills=$(sql "SELECT count(*) FROM fills")
distinct=$(sql "SELECT count(DISTINCT signal_id) FROM orders")
bad_pos=$(sql "SELECT count(*) FROM (SELECT symbol, sum (CASE side WHEN 'buy' THEN qty ELSE -qty END) q
                 FROM fills GROUP BY symbol) f FULL JOIN positions p USING (symbol)
                WHERE coalesce (p.qty, 0) <> coalesce (f.q, 0)")

# Rows written per table over the whole run, and how many updates were HOT (no index entry).
sleep 1                             # backends report their table counters within a second
WRITES=$(sql "SELECT string_agg (format ('%s %s inserted, %s updated (%s%% HOT)', relname, n_tup_ins,
                                         n_tup_upd, CASE WHEN n_tup_upd > 0
                                                         THEN round (100.0 * n_tup_hot_upd / n_tup_upd)
                                                         ELSE 0 END), '; ' ORDER BY relname)
                FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0")

read -r lat_n lat_p50 lat_p99 lat_max <<<"$E2E"
RAW_REPORT=""
if [ ${#RAW[@]} -gt 0 ]; then
  RAW_REPORT="
PostgreSQL alone in the same run, before FKS started (tools/bench_pipeline_db.sql: the rows FKS
writes for each alert, in the three stages' transactions, prepared; $DB_CLIENTS pgbench clients):

| alerts per batch | alerts/s | ms per batch (3 commits) | FKS's sustained rate / this |
| ---: | ---: | ---: | ---: |"
  for r in "${RAW[@]}"; do
    read -r b a l <<<"$r"
    RAW_REPORT="$RAW_REPORT
| $b | $a | $l | $(awk -v f="$best" -v a="$a" 'BEGIN {printf "%.2f", f / a}') |"
  done
  read -r r50 r99 rmax <<<"$RAW_LAT"
  RAW_REPORT="$RAW_REPORT

At $LAT_RATE alerts/s in batches of $DB_LAT_BATCH, PostgreSQL alone takes p50 $r50 ms, p99 $r99 ms
(max $rmax ms) for an alert's three commits, from the batch's scheduled start; FKS's accept ->
order.filled above: p50 $lat_p50 ms, p99 $lat_p99 ms.
"
fi

read -r lat_acc lat_a50 lat_a99 lat_non2xx <<<"$LAT"
verdict_lat=$(awk -v p="$lat_p99" 'BEGIN {print (p < 20 ? "PASS" : "FAIL")}')
verdict_rate=$([ "$best" -ge 5000 ] && echo PASS || echo FAIL)

cat <<EOF

## End-to-end pipeline benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))

fks-gateway -> fks-bus -> fks-signal ($SIGNALS) -> fks-execution ($EXECUTIONS) -> paper broker, all on
this machine with PostgreSQL 15 (fsync=$FSYNC), Redis and wrk. Market orders on 8 symbols;
FKS_WORKER_THREADS=${FKS_WORKER_THREADS:-2}, FKS_WORKER_BATCH=${FKS_WORKER_BATCH:-64}, log level warn.

Latency at $LAT_RATE alerts/s for ${SECONDS_PER_RUN}s (accepted ${lat_acc}/s, non-2xx $lat_non2xx):
accept (HTTP) p50 $lat_a50, p99 $lat_a99; accept -> order.filled over $lat_n alerts:
p50 ${lat_p50} ms, p99 ${lat_p99} ms, max ${lat_max} ms; drained ${LAT_DRAIN}s after the run.
By stage: ${STAGES}.
CPU per alert in that run (wrk not counted): ${CPU}.
Worker batches in that run: ${BATCHES}.

| offered alerts/s | accepted/s | filled/s during the run | backlog at the end | drain (s) | HTTP p99 | sustained |
| ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(printf '%s\n' "${RESULTS[@]}")

$([ "$PGSS" = 1 ] && printf '\nPostgreSQL execution time per alert in the latency run (pg_stat_statements; %s):\n\n| us executing per alert | us planning per alert | calls per alert | rows per call | statement |\n| ---: | ---: | ---: | ---: | --- |\n%s\nJIT: %s\n' "$PGSS_TOTAL" "$PGSS_REPORT" "$PGSS_JIT")

Highest sustained rate: $best alerts/s.
$RAW_REPORT
Consistency: $alerts alerts, $orders filled orders ($distinct distinct signals), $fills fills,
$bad_pos positions differing from the sum of their fills.
Rows written (whole run): $WRITES.
Targets: sustained >= 5000 alerts/s: $verdict_rate; p99 accept -> filled < 20 ms at 1000/s: $verdict_lat
EOF
[ "$alerts" = "$orders" ] && [ "$orders" = "$fills" ] && [ "$orders" = "$distinct" ] && [ "$bad_pos" = 0 ] \
  || { echo "MISMATCH: $alerts alerts, $orders filled orders, $fills fills, $bad_pos bad positions" >&2; exit 1; }
