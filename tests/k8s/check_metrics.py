#!/usr/bin/python3
"""check_metrics.py - every metric that k8s/ reads is one that FKS really exports (TAP).

The seed's monitoring had a rule on a metric that did not exist; this test makes that
impossible. It starts FKS on loopback (tests/k8s/fkslocal.py: the bus, the gateway and every
worker that is built), drives the traffic that creates each labelled series (an accepted, a
duplicate and an invalid webhook, a wrong secret, a refused source, a rate-limited sender, REST
calls with a good and a bad key, an order over the risk limit, a market-data replay), waits for
an alert to become a filled order, scrapes every process's /metrics, and then checks every
PromQL expression of k8s/ - the alert rules, the prometheus-adapter rule, the KEDA
ScaledObjects, the HPAs' External metrics and the Grafana dashboard:

  - each metric name it reads is exported by some FKS process;
  - each label it filters or groups on is a label of that metric (namespace, pod and
    component are added by Prometheus, le by histograms);
  - each label value it compares with = is one the programs have produced.

Suite 'integration': needs FKS_TEST_PG_URL and FKS_TEST_REDIS_URL (tools/test.sh).
usage: check_metrics.py --build-dir DIR --source-dir DIR
"""
import argparse
import datetime
import json
import os
import re
import signal
import sys
import time

import yaml

sys.dont_write_bytecode = True          # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fkslocal  # noqa: E402

PROM_LABELS = {"namespace", "pod", "component", "job", "instance", "le"}
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


# ------------------------------------------------------------------- what k8s/ reads
def k8s_queries(src):
    """[(where, PromQL)] from every file of k8s/ that Prometheus or an autoscaler evaluates."""
    q = []
    k8s = os.path.join(src, "k8s")
    rules = yaml.safe_load(open(os.path.join(k8s, "monitoring", "prometheus", "rules", "fks-alerts.yml")))
    for g in rules["groups"]:
        for r in g["rules"]:
            q.append((f"rule {r.get('alert') or r.get('record')}", r["expr"]))
    adapter = yaml.safe_load(open(os.path.join(k8s, "monitoring", "prometheus-adapter", "config.yaml")))
    for r in adapter.get("externalRules", []) + adapter.get("rules", []):
        q.append(("prometheus-adapter seriesQuery", r["seriesQuery"]))
        q.append(("prometheus-adapter metricsQuery",
                  r["metricsQuery"].replace("<<.Series>>", r["name"].get("as", ""))
                  .replace("{<<.LabelMatchers>>}", "").replace("<<.GroupBy>>", "namespace")))
    for path in (os.path.join(k8s, "components", "keda", "scaledobjects.yaml"), os.path.join(k8s, "base", "hpa.yaml")):
        for d in yaml.safe_load_all(open(path)):
            if not d:
                continue
            for t in d.get("spec", {}).get("triggers", []):
                if t.get("type") == "prometheus":
                    q.append((f"KEDA {d['metadata']['name']}", t["metadata"]["query"]))
            for m in d.get("spec", {}).get("metrics", []):
                if m.get("type") == "External":
                    sel = ",".join(f'{k}="{v}"' for k, v in m["external"]["metric"].get("selector", {})
                                   .get("matchLabels", {}).items())
                    q.append((f"HPA {d['metadata']['name']}", f"{m['external']['metric']['name']}{{{sel}}}"))
    dash = json.load(open(os.path.join(k8s, "monitoring", "grafana", "dashboards", "fks-execution.json")))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            q.append((f"dashboard panel {p['title']!r}", t["expr"].replace("$namespace", ".*")))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            m = re.search(r"label_values\((\w+)", v.get("definition", ""))
            if m:
                q.append((f"dashboard variable {v['name']}", m.group(1)))
    return q


SELECTOR = re.compile(r"\b(fks_[a-zA-Z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def source_literals(src):
    """Every "string literal" of the programs' C sources: label values a program can produce."""
    lits = set()
    for top in ("bus", "gateway", "workers", "common"):
        for root, _, names in os.walk(os.path.join(src, top)):
            for n in names:
                if n.endswith((".c", ".h")):
                    text = open(os.path.join(root, n), encoding="utf-8", errors="replace").read()
                    lits.update(re.findall(r'"([A-Za-z0-9_.:-]{1,64})"', text))
    return lits


def check_queries(queries, samples, literals):
    names_missing, label_problems, value_problems = [], [], []
    used, unseen = set(), set()
    for where, expr in queries:
        metrics_here = []
        for m in SELECTOR.finditer(expr):
            name = m.group(1)
            if expr[m.end():m.end() + 1] == "(":
                continue                                   # a function, not a metric
            used.add(name)
            metrics_here.append(name)
            if name not in samples:
                names_missing.append(f"{where}: {name} is not exported by any FKS process")
                continue
            keys = set().union(*(s.keys() for s in samples[name])) - {"__value__"}
            for k, op, v in MATCHER.findall(m.group(3) or ""):
                if k in PROM_LABELS or k == "__name__":
                    continue
                if k not in keys:
                    label_problems.append(f"{where}: {name} has no label {k} (it has {sorted(keys)})")
                elif op == "=":
                    values = {s.get(k) for s in samples[name]}
                    if v in values:
                        continue
                    # A value only a failure produces (a broker rejection, a 503, a source
                    # that errors) cannot be seen in a healthy run: it must at least be a
                    # label value the programs' sources write.
                    if v in literals:
                        unseen.add(f"{name}{{{k}=\"{v}\"}}")
                    else:
                        value_problems.append(f"{where}: {name}{{{k}=\"{v}\"}} is neither exported nor "
                                              f"written by any program (exported values: {sorted(values)})")
        for m in BY.finditer(expr):
            for k in [x.strip() for x in m.group(1).split(",") if x.strip()]:
                if k in PROM_LABELS or not metrics_here:
                    continue
                if not any(k in set().union(*(s.keys() for s in samples.get(n, [{}]))) for n in metrics_here):
                    label_problems.append(f"{where}: groups by {k}, which none of {sorted(set(metrics_here))} has")
    return used, names_missing, label_problems, value_problems, unseen


# ------------------------------------------------------------------- the run
def wait_for(what, fn, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.25)
    raise fkslocal.Missing(f"timed out after {timeout}s waiting for {what}")


def alert_base():
    return {"ticker": "BTCUSDT", "action": "buy", "quantity": "1", "price": "100",
            "passphrase": fkslocal.WEBHOOK_SECRET, "id": f"k8s-metrics-{os.getpid()}"}


def drive(c):
    """The traffic that creates the labelled series the rules and the dashboard read."""
    secret = fkslocal.WEBHOOK_SECRET
    gw = f"http://127.0.0.1:{c.port('fks-gateway')}"
    seen = {}
    alert = alert_base()
    seen["accepted"] = c.webhook(alert)
    seen["duplicate"] = c.webhook(alert)
    seen["invalid"] = c.webhook({"action": "buy", "quantity": "1", "passphrase": secret})
    seen["unauthorized"] = c.webhook(dict(alert, passphrase="wrong-secret-value", id="k8s-bad"))
    seen["forbidden"] = c.webhook(dict(alert, id="k8s-src"), xff="203.0.113.9")
    # over the risk limit (FKS_RISK_MAX_QTY=10): a risk rejection
    seen["risk"] = c.webhook(dict(alert, quantity="1000", id=f"k8s-risk-{os.getpid()}"))
    limited = 0
    for i in range(200):                         # FKS_GATEWAY_RATE_LIMIT_IP=20 per minute
        st, _ = c.webhook(dict(alert, id=f"k8s-rl-{i}"), xff="10.1.0.99")
        if st == 429:
            limited += 1
            break
    seen["rate_limited"] = (429 if limited else 0, "")
    seen["api_ok"] = fkslocal.http("GET", f"{gw}/api/v1/orders", headers={"Authorization": f"Bearer {fkslocal.ADMIN_KEY}"})
    seen["api_bad_key"] = fkslocal.http("GET", f"{gw}/api/v1/orders", headers={"Authorization": "Bearer fks_not_a_key_at_all_000000"})
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    a = ap.parse_args()
    src, build = os.path.abspath(a.source_dir), os.path.abspath(a.build_dir)

    queries = k8s_queries(src)
    report(len(queries) > 30, f"{len(queries)} PromQL expressions found in k8s/ (rules, adapter, KEDA, HPA, dashboard)")

    try:
        cluster = fkslocal.Cluster(build, src, "metrics")
    except fkslocal.Missing as e:
        report(False, "FKS starts against PostgreSQL and Redis", [e])
        return finish()

    keys = []
    try:
        with cluster as c:
            replay = os.path.join(c.tmp, "bars.csv")
            with open(replay, "w") as f:
                f.write("time,open,high,low,close,volume\n")
                for i in range(30):
                    day = datetime.date(2024, 1, 1) + datetime.timedelta(days=i + (3 if i >= 20 else 0))
                    f.write(f"{day.isoformat()},{100 + i},{101 + i},{99 + i},{100.5 + i},{1000 + i}\n")
            c.start("fks-bus"); keys.append("fks-bus")
            c.start("fks-gateway", extra={
                "FKS_GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
                "FKS_GATEWAY_ALLOWLIST": "127.0.0.1/32,10.1.0.0/16",
                "FKS_GATEWAY_RATE_LIMIT_IP": "20"}); keys.append("fks-gateway")
            have_ai = fkslocal.find_program(build, "fks-ai") is not None
            for name, extra in [("fks-signal", {}),
                                ("fks-execution", {"FKS_RISK_MAX_QTY": "10",
                                                   "FKS_EXECUTION_INPUT": "signal.scored" if have_ai else "signal.created"}),
                                ("fks-data", {"FKS_DATA_FEEDS": f"replay {replay} K8STEST 1d speed=0 calendar=24x7"}),
                                ("fks-ai", {"FKS_AI_MODEL": os.path.join(src, "tools", "data", "model.txt")})]:
                if fkslocal.find_program(build, name):
                    c.start(name, extra=extra)
                    keys.append(name)
            report(True, f"FKS starts and is ready: {', '.join(keys)}")

            seen = drive(c)
            want = {"accepted": 202, "duplicate": 200, "invalid": 400, "unauthorized": 401,
                    "forbidden": 403, "risk": 202, "rate_limited": 429, "api_ok": 200, "api_bad_key": 401}
            bad = [f"{k}: got {seen[k][0]}, expected {v}" for k, v in want.items() if seen[k][0] != v]
            report(not bad, "the gateway answers the test traffic as a user would see it", bad)
            try:
                wait_for("a filled order", lambda: c.sql("SELECT count(*) FROM orders WHERE status = 'filled'") not in ("", "0"), 60)
                wait_for("a risk rejection", lambda: int(c.sql("SELECT count(*) FROM events WHERE type = 'risk.rejected'") or 0) > 0, 60)
                report(True, "the accepted alert became a filled order, the oversized one a risk rejection")
            except fkslocal.Missing as e:
                report(False, "the accepted alert became a filled order, the oversized one a risk rejection",
                       [e] + [f"{k} log: {c.tail(k, 800)}" for k in keys if k in ("fks-signal", "fks-ai", "fks-execution")])
            if "fks-data" in keys:
                try:
                    wait_for("the replayed bars", lambda: int(c.sql("SELECT count(*) FROM bars WHERE symbol = 'K8STEST'") or 0) >= 30, 60)
                    report(True, "the data worker stored the 30 replayed bars")
                except fkslocal.Missing as e:
                    report(False, "the data worker stored the 30 replayed bars", [e])

            # The bus killed (as an OOM kill or a node loss would) while an alert arrives: the
            # alert is committed, the publish is lost, and the restarted bus's reconciler
            # publishes it again from the outbox. This is also what makes the reconciler's
            # labelled counter exist.
            c.stop("fks-bus", sig=signal.SIGKILL)
            st, _ = c.webhook(dict(alert_base(), id=f"k8s-reconcile-{os.getpid()}"))
            c.start("fks-bus", extra={"FKS_BUS_RECONCILE_AFTER": "1s", "FKS_BUS_RECONCILE_INTERVAL": "500ms"})
            try:
                wait_for("the alert accepted while the bus was down to be filled",
                         lambda: int(c.sql("SELECT count(*) FROM orders WHERE status = 'filled'") or 0) >= 2, 60)
                wait_for("the reconciler's counter", lambda: "fks_bus_reconciler_republished_total{"
                         in c.metrics("fks-bus"), 30)
                report(st == 202, "a webhook accepted while the bus was down (SIGKILL) is republished by the "
                       "reconciler and filled", [f"webhook answered {st}"])
            except fkslocal.Missing as e:
                report(False, "a webhook accepted while the bus was down (SIGKILL) is republished by the "
                       "reconciler and filled", [e, c.tail("fks-bus", 800)])

            samples, types = {}, {}
            for k in keys:
                s, t = fkslocal.parse_exposition(c.metrics(k))
                for name, v in s.items():
                    samples.setdefault(name, []).extend(dict(x, __process__=k) for x in v)
                types.update(t)
    except fkslocal.Missing as e:
        report(False, "FKS runs the test traffic", [e])
        return finish()

    for x in samples.values():
        for s in x:
            s.pop("__process__", None)
    report(sum(len(v) for v in samples.values()) > 100,
           f"{len(samples)} sample names, {sum(len(v) for v in samples.values())} series scraped from {len(keys)} processes")

    used, missing, labels, values, unseen = check_queries(queries, samples, source_literals(src))
    report(not missing, f"every metric k8s/ reads is exported ({len(used)} names)", missing)
    report(not labels, "every label k8s/ filters or groups on exists on its metric", labels)
    report(not values, "every label value k8s/ matches with = is exported, or written by the programs "
           f"for failures a healthy run does not produce ({', '.join(sorted(unseen)) or 'none'})", values)

    # The breaker rule must stay silent in a healthy run: the state is exported and closed.
    st = [s for s in samples.get("fks_breaker_state", [])]
    report(st and all(float(s["__value__"]) == 0 for s in st),
           "a healthy pipeline exports the breaker as closed (0), so FKSCircuitBreakerOpen stays silent",
           [f"fks_breaker_state series: {st}"])
    shared = samples.get("fks_gateway_ratelimit_shared", [])
    report(shared and all(float(s["__value__"]) == 1 for s in shared),
           "a gateway with Redis shares its rate limits (1), so FKSRateLimitNotShared stays silent",
           [f"fks_gateway_ratelimit_shared series: {shared}"])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
