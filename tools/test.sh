#!/usr/bin/env bash
# tools/test.sh - the test command: the whole FKS suite, from a fresh Debian machine.
#
# Installs what is missing, builds FKS twice (plain, and with AddressSanitizer +
# UndefinedBehaviorSanitizer), starts a throwaway PostgreSQL and Redis on free loopback ports
# in a temporary folder, runs every test suite in both builds, runs each libFuzzer harness for
# a short time, checks that the run command starts and stops cleanly, then stops every service
# it started, also when a test fails or the run is interrupted. `.ci/run` calls exactly this.
#
#   FKS_TEST_SANITIZE=0    skip the sanitizer build (quicker, for local iteration)
#   FKS_FUZZ_SECONDS=N     seconds per fuzz harness (default 15; 0 skips fuzzing)
#   FKS_TEST_ARGS="..."    extra arguments for `meson test` (e.g. a test name, --suite unit)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SANITIZE=${FKS_TEST_SANITIZE:-1}
FUZZ_SECONDS=${FKS_FUZZ_SECONDS:-15}
started_at=$(date +%s)

fks_install_deps $FKS_PACKAGES_BUILD $FKS_PACKAGES_RUN $FKS_PACKAGES_TEST

TMP=$(mktemp -d /tmp/fks-test.XXXXXX)
chmod 755 "$TMP"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  FKS_STATE_DIR="$TMP/run" "$FKS_ROOT/tools/stop.sh" >/dev/null 2>&1 || true
  fks_stop_programs "$TMP"
  fks_redis_stop "$TMP/redis"
  fks_pg_stop "$TMP/pg"
  if [ "$rc" != 0 ] && [ -d "$TMP" ]; then
    mkdir -p "$FKS_ROOT/build/test-logs"
    cp -r "$TMP"/*.log "$TMP"/pg/postgresql.log "$TMP"/redis/redis.log "$TMP"/run/logs \
      "$FKS_ROOT/build/test-logs/" 2>/dev/null || true
    fks_say "service logs kept in $FKS_ROOT/build/test-logs"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fks_say "== build (plain)"
fks_build "$FKS_ROOT/build"
if [ "$SANITIZE" = 1 ]; then
  fks_say "== build (address,undefined sanitizers)"
  fks_build "$FKS_ROOT/build-asan" -Db_sanitize=address,undefined -Dbuildtype=debug
fi

fks_say "== services"
PG_PORT=$(fks_free_port)
FKS_PG_FSYNC=off fks_pg_start "$TMP/pg" "$PG_PORT"
REDIS_PORT=$(fks_free_port)
fks_redis_start "$TMP/redis" "$REDIS_PORT"
export FKS_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export FKS_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fks_say "PostgreSQL 127.0.0.1:$PG_PORT, Redis 127.0.0.1:$REDIS_PORT (in $TMP)"

failed=0
run_suite() {
  local dir=$1
  fks_say "== meson test -C $(basename "$dir") ${FKS_TEST_ARGS:-}"
  # shellcheck disable=SC2086
  meson test -C "$dir" --print-errorlogs --timeout-multiplier 3 ${FKS_TEST_ARGS:-} \
    || failed=1
}
run_suite "$FKS_ROOT/build"
if [ "$SANITIZE" = 1 ]; then
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_suite "$FKS_ROOT/build-asan"
  # A sanitizer report in a forked test process or a child program does not always fail the
  # test that caused it (Criterion ignores LeakSanitizer's exit status): read the logs too.
  if grep -nE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
       "$FKS_ROOT/build-asan/meson-logs/testlog.txt" >"$TMP/sanitizer.txt" 2>/dev/null; then
    fks_say "sanitizer reports in build-asan/meson-logs/testlog.txt:"
    head -n 40 "$TMP/sanitizer.txt" >&2
    sanitizer_result="not ok sanitizer_reports"
    failed=1
  else
    sanitizer_result="ok sanitizer_reports"
  fi
fi

fuzz_results=()
if [ "$FUZZ_SECONDS" != 0 ] && [ -z "${FKS_TEST_ARGS:-}" ]; then
  fks_say "== fuzz (libFuzzer, ${FUZZ_SECONDS}s per harness)"
  # The whole tree is built with coverage instrumentation (fuzzer-no-link), so libFuzzer sees
  # inside the parsers, and with the sanitizers, so a bad read is a crash, not a quiet pass.
  # Only the harnesses (and what they link) are built here.
  if [ ! -f "$FKS_ROOT/build-fuzz/build.ninja" ]; then
    CC=clang meson setup "$FKS_ROOT/build-fuzz" "$FKS_ROOT" -Dfuzzing=true -Db_lundef=false \
      -Db_sanitize=address,undefined -Dc_args=-fsanitize=fuzzer-no-link \
      -Dbuildtype=debugoptimized >"$FKS_ROOT/build-fuzz.setup.log" 2>&1 \
      || { cat "$FKS_ROOT/build-fuzz.setup.log" >&2; fks_die "meson setup build-fuzz failed"; }
  fi
  ninja -C "$FKS_ROOT/build-fuzz" fuzz/fuzz_envelope fuzz/fuzz_webhook \
    >"$FKS_ROOT/build-fuzz.build.log" 2>&1 \
    || { tail -n 40 "$FKS_ROOT/build-fuzz.build.log" >&2; fks_die "fuzz build failed"; }
  for h in "$FKS_ROOT"/build-fuzz/fuzz/fuzz_*; do
    [ -f "$h" ] && [ -x "$h" ] || continue
    name=$(basename "$h"); corpus="$FKS_ROOT/fuzz/corpus/${name#fuzz_}"
    mkdir -p "$TMP/corpus-$name"
    if "$h" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
         -artifact_prefix="$TMP/" "$TMP/corpus-$name" "$corpus" >"$TMP/$name.log" 2>&1; then
      fuzz_results+=("ok $name")
    else
      fuzz_results+=("not ok $name")
      failed=1
      tail -n 40 "$TMP/$name.log" >&2
      cp "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-* "$FKS_ROOT/build-fuzz/" 2>/dev/null || true
    fi
    fks_say "$(tail -n 1 "$TMP/$name.log")"
  done
fi

# The run command, as a user would run it: start everything, every /health answers, stop
# leaves no process behind. Private ports and state, so a running FKS is not disturbed.
run_results=()
if [ -z "${FKS_TEST_ARGS:-}" ]; then
  fks_say "== run command (tools/run.sh --detach, then tools/stop.sh)"
  (
    export FKS_STATE_DIR="$TMP/run" FKS_BUILD_DIR="$FKS_ROOT/build"
    export FKS_LOCAL_PG_PORT=$(fks_free_port) FKS_LOCAL_REDIS_PORT=$(fks_free_port)
    for v in FKS_BUS_PORT FKS_GATEWAY_PORT FKS_SIGNAL_PORT FKS_DATA_PORT FKS_EXECUTION_PORT FKS_AI_PORT; do
      export "$v=$(fks_free_port)"
    done
    export FKS_BUS_BIND="tcp://127.0.0.1:$(fks_free_port)" FKS_BUS_STREAM_BIND="tcp://127.0.0.1:$(fks_free_port)"
    "$FKS_ROOT/tools/run.sh" --detach >"$TMP/run.log" 2>&1 || { cat "$TMP/run.log" >&2; exit 1; }
    grep -q 'FKS is running' "$TMP/run.log" || { cat "$TMP/run.log" >&2; exit 1; }
    pids=$(cat "$TMP"/run/pids/*.pid 2>/dev/null; cat "$TMP/run/redis/redis.pid")
    # a second run reuses the state and the running services
    "$FKS_ROOT/tools/run.sh" --detach >"$TMP/run2.log" 2>&1 || { cat "$TMP/run2.log" >&2; exit 1; }
    "$FKS_ROOT/tools/stop.sh" >"$TMP/stop.log" 2>&1 || { cat "$TMP/stop.log" >&2; exit 1; }
    for p in $pids; do
      if kill -0 "$p" 2>/dev/null; then echo "process $p still running after stop" >&2; exit 1; fi
    done
    if fks_as_pg "$FKS_PG_BIN/pg_ctl" -D "$(readlink -f "$TMP/run/postgresql")/data" status >/dev/null 2>&1; then
      echo "PostgreSQL still running after stop" >&2; exit 1
    fi
  ) && run_results+=("ok run_command_starts_and_stops") \
    || { run_results+=("not ok run_command_starts_and_stops"); failed=1; }
fi

# One closing line for the whole run, counted from meson's logs (TAP subtests where a test
# speaks TAP) plus the fuzz and run-command checks.
summary=$(/usr/bin/python3 - "$FKS_ROOT/build" "$( [ "$SANITIZE" = 1 ] && echo "$FKS_ROOT/build-asan")" \
            "${fuzz_results[@]}" "${run_results[@]}" ${sanitizer_result:+"$sanitizer_result"} <<'PY'
import json, os, re, sys
passed = failed = 0
for d in sys.argv[1:3]:
    path = os.path.join(d, 'meson-logs', 'testlog.json') if d else ''
    if not path or not os.path.exists(path):
        continue
    for line in open(path):
        t = json.loads(line)
        out = t.get('stdout') or ''
        oks = len(re.findall(r'^ok\b', out, re.M))
        bad = len(re.findall(r'^not ok\b', out, re.M))
        if oks + bad == 0:
            oks, bad = (1, 0) if t.get('result') in ('OK', 'EXPECTEDFAIL') else (0, 1)
        elif t.get('result') not in ('OK', 'EXPECTEDFAIL') and bad == 0:
            bad = 1          # crashed or timed out after its last TAP line
        passed += oks; failed += bad
for r in sys.argv[3:]:
    if r.startswith('not ok'): failed += 1
    elif r.startswith('ok'): passed += 1
print(f"{passed} passed, {failed} failed")
PY
)
fks_say "== done in $(( $(date +%s) - started_at ))s"
echo "$summary"
[ "$failed" = 0 ] && ! grep -q '[1-9][0-9]* failed' <<<"$summary"
