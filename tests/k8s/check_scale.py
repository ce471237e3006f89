#!/usr/bin/python3
"""check_scale.py - a worker scaled 1 -> 3 -> 1 under load, as Kubernetes would (TAP).

No cluster runs here, so this plays the HPA and the kubelet on loopback (tests/k8s/fkslocal.py):
the bus, the gateway, one execution replica and the signal worker, which is what scales. The
signal replicas are made slow on purpose (one thread, one message per transaction, a credit
window of one) so that a burst of webhooks builds a backlog. Every 200 ms the test reads
fks_bus_queue_depth{group="signal"} from the bus's /metrics exactly as the HPA reads it through
prometheus-adapter (AverageValue target T: desired = ceil(depth / T), clamped to 1..3) and:

  - scales up by starting new replica processes when desired > running;
  - once the first burst is worked off, sends a second burst and scales down while it flows:
    SIGTERM to one replica at a time, a grace period (then SIGKILL, as the kubelet would),
    the next one only after the first has exited.

Then, with every alert handled: nothing lost (each accepted webhook has exactly one signal and
one filled order), nothing done twice (one signal.created event per alert, no order without
its signal), every scaled-down replica drained cleanly (exit 0), every replica did part of the
work, and the queue-depth metric rose while under load and fell back to 0, so the HPA's
reading went 1 -> 3 -> 1.

Suite 'integration': needs FKS_TEST_PG_URL and FKS_TEST_REDIS_URL (tools/test.sh).
usage: check_scale.py --build-dir DIR --source-dir DIR [--alerts N]
"""
import argparse
import http.client
import json
import math
import os
import sys
import threading
import time

sys.dont_write_bytecode = True          # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fkslocal  # noqa: E402

TARGET = 50            # messages waiting per replica (the HPA's AverageValue)
MIN_REPLICAS, MAX_REPLICAS = 1, 3
GRACE = 60             # terminationGracePeriodSeconds of k8s/base/signal.yaml
SLOW = {"FKS_WORKER_THREADS": "1", "FKS_WORKER_BATCH": "1", "FKS_WORKER_WINDOW": "1"}

results = []


def report(ok, what, problems=()):
    results.append((bool(ok), what, [str(p) for p in problems]))


def finish():
    failed = 0
    for i, (ok, what, probs) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {what}")
        for p in probs if not ok else []:
            for line in str(p).splitlines() or [""]:
                print(f"# {line}")
        failed += not ok
    print(f"1..{len(results)}")
    return 1 if failed or not results else 0


class Load:
    """Posts alerts from a few keep-alive connections; records every answer."""

    def __init__(self, port, prefix, n, threads=6):
        self.port, self.prefix, self.n, self.threads = port, prefix, n, threads
        self.status = {}
        self.lock = threading.Lock()
        self.next = 0
        self.workers = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        for w in self.workers:
            w.start()
        return self

    def take(self):
        with self.lock:
            if self.next >= self.n:
                return None
            self.next += 1
            return self.next - 1

    def run(self):
        conn = None
        while True:
            i = self.take()
            if i is None:
                break
            body = json.dumps({"ticker": "BTCUSDT", "action": "buy" if i % 2 == 0 else "sell",
                               "quantity": "0.001", "price": "100", "id": f"{self.prefix}-{i}",
                               "passphrase": fkslocal.WEBHOOK_SECRET})
            st = 0
            for _ in range(3):                         # a dropped keep-alive connection: retry
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.request("POST", "/webhook", body=body,
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": "10.1.0.1"})
                    r = conn.getresponse()
                    r.read()
                    st = r.status
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException):
                    if conn:
                        conn.close()
                    conn = None
            with self.lock:
                self.status[i] = st
        if conn:
            conn.close()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.join(max(0.1, deadline - time.monotonic()))
        return all(not w.is_alive() for w in self.workers)

    def accepted(self):
        return sum(1 for s in self.status.values() if s in (200, 202))


def depth(c):
    s, _ = fkslocal.parse_exposition(c.metrics("fks-bus"))
    return int(fkslocal.value(s, "fks_bus_queue_depth", group="signal"))


def desired(d):
    return max(MIN_REPLICAS, min(MAX_REPLICAS, math.ceil(d / TARGET)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--alerts", type=int, default=3000, help="alerts per burst")
    a = ap.parse_args()
    src, build = os.path.abspath(a.source_dir), os.path.abspath(a.build_dir)
    try:
        cluster = fkslocal.Cluster(build, src, "scale")
    except fkslocal.Missing as e:
        report(False, "FKS starts against PostgreSQL and Redis", [e])
        return finish()

    readings = []            # (seconds, depth, desired, running)
    exits, handled = {}, {}
    t0 = time.monotonic()
    replicas = []

    def hpa_tick(c):
        d = depth(c)
        readings.append((round(time.monotonic() - t0, 2), d, desired(d), len(replicas)))
        return d

    def scrape_handled(c, key):
        s, _ = fkslocal.parse_exposition(c.metrics(key))
        return int(fkslocal.value(s, "fks_worker_messages_total", group="signal", result="ok"))

    try:
        with cluster as c:
            c.start("fks-bus")
            c.start("fks-gateway", extra={"FKS_GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
                                          "FKS_GATEWAY_RATE_LIMIT_IP": "0", "FKS_GATEWAY_RATE_LIMIT_KEY": "0"})
            c.start("fks-execution", extra={"FKS_EXECUTION_INPUT": "signal.created"})
            c.start("fks-signal", key="signal-1", extra=SLOW)
            replicas.append("signal-1")
            gw = c.port("fks-gateway")

            # Burst 1: scale up as the backlog grows.
            load1 = Load(gw, f"scale1-{os.getpid()}", a.alerts).start()
            deadline = time.monotonic() + 240
            peak = 0
            while time.monotonic() < deadline:
                d = hpa_tick(c)
                peak = max(peak, d)
                while desired(d) > len(replicas):
                    key = f"signal-{len(replicas) + 1}"
                    c.start("fks-signal", key=key, extra=SLOW)
                    replicas.append(key)
                if not any(w.is_alive() for w in load1.workers) and d == 0:
                    break
                time.sleep(0.2)
            load1.wait(30)
            scaled_up = len(replicas)
            report(peak > TARGET * 2 and scaled_up == MAX_REPLICAS,
                   f"under load the queue depth rose to {peak} and the HPA's reading asked for "
                   f"{MAX_REPLICAS} replicas: {scaled_up} running",
                   [f"readings (s, depth, desired, running): {readings[-40:]}"])

            # Burst 2: scale down while it flows, one replica at a time, SIGTERM first.
            load2 = Load(gw, f"scale2-{os.getpid()}", a.alerts // 2).start()
            time.sleep(0.5)
            while len(replicas) > MIN_REPLICAS:
                key = replicas.pop()
                handled[key] = scrape_handled(c, key)
                exits[key] = c.stop(key, grace=GRACE)
                hpa_tick(c)
            load2.wait(120)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                if hpa_tick(c) == 0 and not any(w.is_alive() for w in load2.workers):
                    break
                time.sleep(0.2)

            accepted = load1.accepted() + load2.accepted()
            want = a.alerts + a.alerts // 2
            report(accepted == want, f"every one of the {want} webhooks was accepted ({accepted})",
                   [f"answers other than 202: {sorted(set(load1.status.values()) | set(load2.status.values()))}"])

            def settled():
                n = int(c.sql("SELECT count(*) FROM orders WHERE status = 'filled'") or 0)
                return n >= accepted
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not settled():
                time.sleep(0.5)
            handled["signal-1"] = scrape_handled(c, "signal-1")

            q = lambda sql: int(c.sql(sql) or 0)  # noqa: E731
            inbox = q("SELECT count(*) FROM inbox")
            signals = q("SELECT count(*) FROM signals")
            orders = q("SELECT count(*) FROM orders")
            filled = q("SELECT count(*) FROM orders WHERE status = 'filled'")
            lost = q("SELECT count(*) FROM inbox i WHERE NOT EXISTS (SELECT 1 FROM signals s WHERE s.inbox_id = i.id)")
            twice = q("SELECT count(*) FROM (SELECT corr FROM events WHERE type = 'signal.created' "
                      "GROUP BY corr HAVING count(*) > 1) x")
            orphan = q("SELECT count(*) FROM orders o WHERE o.signal_id IS NULL")
            report(inbox == accepted and signals == inbox and lost == 0,
                   f"nothing lost: {inbox} alerts, {signals} signals, none without its signal",
                   [f"inbox {inbox}, accepted {accepted}, signals {signals}, alerts without a signal {lost}"])
            report(twice == 0 and orders == signals and filled == orders and orphan == 0,
                   f"nothing done twice: one signal.created per alert, {orders} orders for {signals} signals, all filled",
                   [f"alerts with two signal.created events {twice}, orders {orders}, filled {filled}, "
                    f"orders without a signal {orphan}"])
            report(all(code == 0 for code in exits.values()) and len(exits) == MAX_REPLICAS - MIN_REPLICAS,
                   f"scaled-down replicas drained on SIGTERM and exited 0 ({exits})",
                   [f"exit codes {exits}"] + [f"{k}: {c.tail(k, 400)}" for k, v in exits.items() if v != 0])
            report(len(handled) == MAX_REPLICAS and all(v > 0 for v in handled.values()),
                   f"the replicas shared the work ({handled})", [f"messages handled per replica {handled}"])
            final = readings[-1] if readings else None
            report(final and final[1] == 0 and final[2] == MIN_REPLICAS and len(replicas) == MIN_REPLICAS,
                   f"after the load the queue depth is back to 0 and the HPA's reading to {MIN_REPLICAS} replica",
                   [f"last readings {readings[-10:]}"])
    except fkslocal.Missing as e:
        report(False, "FKS runs the scale scenario", [e])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
