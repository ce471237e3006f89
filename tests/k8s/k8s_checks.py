#!/usr/bin/python3
"""k8s_checks.py - the offline checks of k8s/ (manifests and monitoring), as TAP producers.

    k8s_checks.py CHECK --source-dir SRC --work DIR

CHECK is one of
  render      `kubectl kustomize` renders every overlay (dev, prod, keda) and the prod overlay
              with the tradingview-mtls component, and each holds what it must (and not what
              it must not: keda has no prometheus-adapter and no worker HPA, and so on)
  schema      every rendered object validates against the Kubernetes and KEDA schemas, and
              FKS's policy and reference checks (k8s/validate/validate.mjs, npm packages
              installed by k8s/validate/install.sh into DIR/validate); the validator also
              reports each defect planted in tests/k8s/fixtures/bad-manifests.yaml
  yamllint    yamllint on every YAML file of k8s/ and tests/k8s/, and on the rendered overlays
  monitoring  promtool check rules / test rules / check config, amtool check-config, the
              Alertmanager routes, templates and inhibition, rule coverage by the unit tests,
              severities, the Grafana dashboard and its provisioning
Each run works in its own folder under DIR and prints TAP; exit status 0 when all are ok.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

sys.dont_write_bytecode = True          # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fkslocal import free_port  # noqa: E402

OVERLAYS = ["dev", "prod", "keda"]
results = []


def report(ok, what, problems=()):
    results.append((bool(ok), what, [str(p) for p in problems]))


def sh(cmd, stdout_only=False):
    """Runs cmd; returns (exit code, stdout+stderr), or stdout alone."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        return 127, f"{cmd[0]} is not installed (tools/test.sh installs the test packages; kubectl and node come with the machine)"
    return r.returncode, (r.stdout if stdout_only else r.stdout + r.stderr)


def render_all(src, out):
    """Renders every overlay (and prod+mtls) into out/NAME.yaml; returns {name: path}."""
    dirs = {o: os.path.join(src, "k8s", "overlays", o) for o in OVERLAYS}
    dirs["prod-mtls"] = os.path.join(src, "tests", "k8s", "overlays", "prod-mtls")
    paths = {}
    for name, d in dirs.items():
        rc, text = sh(["kubectl", "kustomize", d])
        path = os.path.join(out, f"{name}.yaml")
        if rc == 0:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths[name] = path
        report(rc == 0, f"kubectl kustomize renders {os.path.relpath(d, src)}", [] if rc == 0 else text.splitlines()[-5:])
    return paths


def objects(path):
    return [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]


# ----------------------------------------------------------------------------- render
def check_render(src, work):
    paths = render_all(src, work)
    if len(paths) != len(OVERLAYS) + 1:
        return

    def kinds(name):
        return [(o["kind"], o["metadata"]["name"]) for o in objects(paths[name])]

    fks = {"fks-bus", "fks-gateway", "fks-signal", "fks-data", "fks-execution", "fks-ai"}
    for name in paths:
        k = kinds(name)
        deps = {n for kind, n in k if kind == "Deployment"}
        problems = [f"no Deployment {d}" for d in sorted(fks - deps)]
        for want in [("Namespace", "fks-trading"), ("Namespace", "monitoring"), ("StatefulSet", "postgres"),
                     ("StatefulSet", "redis"), ("Job", "fks-migrate"), ("ConfigMap", "fks-config"),
                     ("Ingress", "fks-webhook"), ("Ingress", "fks-api"), ("Ingress", "grafana"),
                     ("Deployment", "prometheus"), ("Deployment", "alertmanager"), ("Deployment", "grafana"),
                     ("HorizontalPodAutoscaler", "fks-gateway")]:
            if want not in k:
                problems.append(f"no {want[0]} {want[1]}")
        if any(kind == "Secret" for kind, _ in k):
            problems.append("a Secret is rendered: Secrets come only from k8s/secrets.sh")
        adapter = ("APIService", "v1beta1.external.metrics.k8s.io") in k
        worker_hpas = {n for kind, n in k if kind == "HorizontalPodAutoscaler"} - {"fks-gateway"}
        scaled = {n for kind, n in k if kind == "ScaledObject"}
        if name == "keda":
            if adapter:
                problems.append("keda renders prometheus-adapter's APIService (KEDA owns that API)")
            if worker_hpas:
                problems.append(f"keda keeps worker HPAs {sorted(worker_hpas)}")
            if scaled != fks - {"fks-bus", "fks-gateway"}:
                problems.append(f"keda ScaledObjects are {sorted(scaled)}")
        else:
            if not adapter:
                problems.append("no prometheus-adapter APIService")
            if worker_hpas != fks - {"fks-bus", "fks-gateway"}:
                problems.append(f"worker HPAs are {sorted(worker_hpas)}")
            if scaled:
                problems.append("ScaledObjects outside the keda overlay")
        text = open(paths[name], encoding="utf-8").read()
        mtls = "auth-tls-verify-client" in text
        if mtls != (name == "prod-mtls"):
            problems.append("client-certificate annotations " + ("missing" if name == "prod-mtls" else "present"))
        report(not problems, f"overlay {name} holds the FKS programs, services and monitoring it should", problems)

    # dev is small, prod is the production size: the volumes and the allowlist say which.
    def claim(name, sts):
        for o in objects(paths[name]):
            if o["kind"] == "StatefulSet" and o["metadata"]["name"] == sts:
                return o["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    sizes = {n: (claim(n, "postgres"), claim(n, "redis")) for n in ("dev", "prod", "keda")}
    want = {"dev": ("1Gi", "512Mi"), "prod": ("20Gi", "5Gi"), "keda": ("20Gi", "5Gi")}
    report(sizes == want, "PostgreSQL / Redis volumes are 20Gi / 5Gi in prod and 1Gi / 512Mi in dev",
           [f"{n}: {sizes[n]}, expected {want[n]}" for n in sizes if sizes[n] != want[n]])

    def config(name):
        for o in objects(paths[name]):
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "fks-config":
                return o["data"]
    prod, dev = config("prod"), config("dev")
    problems = []
    tv = {"52.89.214.238/32", "34.212.75.30/32", "54.218.53.128/32", "52.32.178.7/32"}
    if set(prod.get("FKS_GATEWAY_ALLOWLIST", "").split(",")) != tv:
        problems.append(f"prod allowlist is {prod.get('FKS_GATEWAY_ALLOWLIST')!r}")
    if prod.get("FKS_ENV") != "prod" or dev.get("FKS_ENV") != "dev":
        problems.append("FKS_ENV is not prod / dev")
    for key in ("FKS_PG_URL", "FKS_REDIS_PASSWORD", "FKS_WEBHOOK_SECRET", "FKS_ADMIN_KEY"):
        if key in prod or key in dev:
            problems.append(f"{key} is in the ConfigMap: it is a secret")
    report(not problems, "prod accepts webhooks only from TradingView's addresses; no secret in the ConfigMap",
           problems)


# ----------------------------------------------------------------------------- schema
def check_schema(src, work):
    paths = render_all(src, work)
    rc, out = sh([os.path.join(src, "k8s", "validate", "install.sh"), os.path.join(os.path.dirname(work), "validate")],
                 stdout_only=True)
    report(rc == 0, "the validator's npm packages are installed (npm ci of k8s/validate/package-lock.json)",
           [] if rc == 0 else out.splitlines()[-10:])
    if rc != 0:
        return
    validator = out.strip().splitlines()[-1]
    secrets = ",".join(os.path.join(src, "k8s", "secrets", f)
                       for f in ("fks-secrets.template.yaml", "monitoring-secrets.template.yaml"))
    for name, path in paths.items():
        rc, out = sh(["node", validator, "--name", name, "--secrets", secrets, path])
        oks = len(re.findall(r"^ok ", out, re.M))
        bad = [l for l in out.splitlines() if l.startswith("not ok") or l.startswith("  #")]
        report(rc == 0 and oks > 50 and not bad,
               f"overlay {name}: {oks} schema, policy and reference checks pass", bad or ([] if rc == 0 else [out[-500:]]))

    # The secret templates hold placeholders only.
    problems = []
    for f in ("fks-secrets.template.yaml", "monitoring-secrets.template.yaml"):
        for o in objects(os.path.join(src, "k8s", "secrets", f)):
            for k, v in (o.get("stringData") or {}).items():
                if not re.search(r"__[A-Z0-9_]+__", v):
                    problems.append(f"{f}: {o['metadata']['name']}.{k} holds a value, not a placeholder")
            if o.get("data"):
                problems.append(f"{f}: {o['metadata']['name']} has base64 data")
    report(not problems, "the Secret templates hold placeholders only", problems)

    # A validator that passes everything is worthless: it must find each planted defect.
    bad = os.path.join(src, "tests", "k8s", "fixtures", "bad-manifests.yaml")
    rc, out = sh(["node", validator, "--name", "bad", "--secrets", secrets, bad])
    expect = [
        "containerPort must be integer",
        'cpu must match format "quantity"',
        "no schema for apiVersion example.com/v1, kind Widget",
        "readOnlyRootFilesystem must be true",
        "allowPrivilegeEscalation must be false",
        "capabilities.drop must hold ALL",
        "seccompProfile must be RuntimeDefault",
        "no memory limit",
        "livenessProbe must GET /health",
        "readinessProbe must GET /ready",
        'prometheus.io/scrape must be "true"',
        "leaves under 20 s to drain",
        "FKS_WEBHOOK_SECRET must come from a file",
        "Service/fks-trading/fks-signal: selector matches no pod",
        "names app.kubernetes.io/component=executoin, which no pod has",
        "scale target Deployment/fks-bus does not exist",
        "the bus must never be autoscaled",
        "External metric fks_bus_queue_depth but no prometheus-adapter",
    ]
    missing = [e for e in expect if e not in out]
    report(rc != 0 and not missing, f"the validator reports each of the {len(expect)} defects planted in "
           "tests/k8s/fixtures/bad-manifests.yaml", [f"not reported: {m}" for m in missing])


# ----------------------------------------------------------------------------- yamllint
def check_yamllint(src, work):
    cfg = os.path.join(src, "k8s", ".yamllint.yaml")
    files = []
    for top in ("k8s", os.path.join("tests", "k8s")):
        for root, dirs, names in os.walk(os.path.join(src, top)):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "generated")]
            files += [os.path.join(root, n) for n in names if n.endswith((".yaml", ".yml"))]
    rc, out = sh(["yamllint", "-s", "-f", "parsable", "-c", cfg] + sorted(files))
    report(rc == 0 and len(files) > 20, f"yamllint: {len(files)} YAML files of k8s/ and tests/k8s/",
           out.splitlines()[:30])
    # kustomize's output carries ConfigMaps with embedded files: long lines are not its fault.
    rendered_cfg = os.path.join(work, "yamllint-rendered.yaml")
    with open(rendered_cfg, "w", encoding="utf-8") as f:
        f.write(f"extends: {cfg}\nrules:\n  line-length: disable\n")
    paths = render_all(src, work)
    rc, out = sh(["yamllint", "-s", "-f", "parsable", "-c", rendered_cfg] + sorted(paths.values()))
    report(rc == 0, "yamllint: the rendered overlays", out.splitlines()[:30])


# ----------------------------------------------------------------------------- monitoring
def check_monitoring(src, work):
    mon = os.path.join(src, "k8s", "monitoring")
    rules = os.path.join(mon, "prometheus", "rules", "fks-alerts.yml")
    tests = os.path.join(mon, "prometheus", "tests", "fks-alerts.test.yml")

    rc, out = sh(["promtool", "check", "rules", rules])
    report(rc == 0 and "SUCCESS" in out, "promtool check rules", out.splitlines()[-5:])
    rc, out = sh(["promtool", "test", "rules", tests])
    report(rc == 0 and "SUCCESS" in out, "promtool test rules (every rule fires and stays silent as tested)",
           out.splitlines()[-40:])

    # Severities and coverage: 5 critical, 8 warning, 5 info; every alert has a test where
    # it fires and one where it stays silent.
    groups = yaml.safe_load(open(rules, encoding="utf-8"))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    sev = {}
    for r in alerts:
        sev.setdefault(r.get("labels", {}).get("severity"), []).append(r["alert"])
    counts = {s: len(sev.get(s, [])) for s in ("critical", "warning", "info")}
    want = {"critical": 5, "warning": 8, "info": 5}
    problems = [f"{s}: {counts[s]} rules, the design asks for {want[s]}" for s in want if counts[s] != want[s]]
    problems += [f"{r['alert']}: severity {r.get('labels', {}).get('severity')!r}" for r in alerts
                 if r.get("labels", {}).get("severity") not in want]
    problems += [f"{r['alert']}: no summary/description/runbook" for r in alerts
                 if not all(k in r.get("annotations", {}) for k in ("summary", "description", "runbook"))]
    report(not problems, f"alert rules by severity: {counts}", problems)

    # Every runbook link points at a section of docs/KUBERNETES.md (GitHub's anchors).
    doc = open(os.path.join(src, "docs", "KUBERNETES.md"), encoding="utf-8").read()
    anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#{1,6} (.+)$", doc, re.M)}
    problems = []
    for r in alerts:
        link = r.get("annotations", {}).get("runbook", "")
        if not link.startswith("docs/KUBERNETES.md#") or link.split("#", 1)[1] not in anchors:
            problems.append(f"{r['alert']}: runbook {link!r} is not a section of docs/KUBERNETES.md")
    report(not problems, "every alert's runbook is a section of docs/KUBERNETES.md", problems)

    fires, silent = set(), set()
    for t in yaml.safe_load(open(tests, encoding="utf-8"))["tests"]:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else silent).add(a["alertname"])
    names = {r["alert"] for r in alerts}
    problems = [f"{n}: no test makes it fire" for n in sorted(names - fires)]
    problems += [f"{n}: no test keeps it silent" for n in sorted(names - silent)]
    problems += [f"{n}: tested but not a rule" for n in sorted((fires | silent) - names)]
    report(not problems, f"each of the {len(names)} alerts has a firing and a silent unit test", problems)

    # promtool check config. Debian's Prometheus is built without Kubernetes service
    # discovery, so its promtool cannot parse kubernetes_sd_configs: that block is checked
    # here for its shape, and promtool checks the rest (relabelling included) with the block
    # replaced by a static target. The rule files are the repository's.
    cfg = yaml.safe_load(open(os.path.join(mon, "prometheus", "prometheus.yml"), encoding="utf-8"))
    problems = []
    for sc in cfg.get("scrape_configs", []):
        for sd in sc.pop("kubernetes_sd_configs", []) or []:
            if sd.get("role") not in ("pod", "service", "endpoints", "endpointslice", "node", "ingress"):
                problems.append(f"{sc['job_name']}: kubernetes_sd role {sd.get('role')!r}")
            if set(sd) - {"role", "namespaces", "selectors", "api_server", "attach_metadata"}:
                problems.append(f"{sc['job_name']}: unknown kubernetes_sd keys {sorted(set(sd) - {'role', 'namespaces'})}")
            if "fks-trading" not in (sd.get("namespaces") or {}).get("names", []):
                problems.append(f"{sc['job_name']}: does not discover namespace fks-trading")
            sc["static_configs"] = [{"targets": ["10.0.0.1:8001"]}]
    if cfg.get("rule_files") != ["/etc/prometheus/rules/*.yml"]:
        problems.append(f"rule_files {cfg.get('rule_files')} is not where the rules ConfigMap is mounted")
    cfg["rule_files"] = [rules]
    checked = os.path.join(work, "prometheus.yml")
    with open(checked, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    rc, out = sh(["promtool", "check", "config", checked])
    report(rc == 0 and not problems and "SUCCESS" in out,
           "promtool check config (kubernetes_sd_configs checked separately)", problems + out.splitlines()[-8:])

    # The relabelling gives FKS series the labels the rules and the adapter use.
    labels = {rc_.get("target_label") for sc in cfg["scrape_configs"] for rc_ in sc.get("relabel_configs", [])}
    report({"namespace", "pod", "component"} <= labels, "scrapes label FKS series with namespace, pod and component",
           [f"target labels: {sorted(x for x in labels if x)}"])

    # Alertmanager: the real file, with its templates where the Deployment mounts them.
    am_src = os.path.join(mon, "alertmanager", "alertmanager.yml")
    am_dir = os.path.join(work, "alertmanager")
    os.makedirs(os.path.join(am_dir, "templates"), exist_ok=True)
    shutil.copy(os.path.join(mon, "alertmanager", "fks.tmpl"), os.path.join(am_dir, "templates"))
    text = open(am_src, encoding="utf-8").read()
    if "/etc/alertmanager/templates/*.tmpl" not in text:
        report(False, "alertmanager.yml reads its templates from /etc/alertmanager/templates")
        return
    am = os.path.join(am_dir, "alertmanager.yml")
    with open(am, "w", encoding="utf-8") as f:
        f.write(text.replace("/etc/alertmanager/templates/*.tmpl", os.path.join(am_dir, "templates", "*.tmpl")))
    rc, out = sh(["amtool", "check-config", am])
    report(rc == 0 and "1 templates" in out and "3 receivers" in out,
           "amtool check-config (routes, 3 receivers, inhibition, templates parsed)", out.splitlines()[-10:])

    problems = []
    for labels_, want in [("severity=critical", "critical"), ("severity=warning", "warning"),
                          ("severity=info", "info"), ("severity=unknown", "info")]:
        rc, out = sh(["amtool", "config", "routes", "test", f"--config.file={am}", labels_,
                      "alertname=FKSTest", "namespace=fks-trading"], stdout_only=True)
        got = out.strip().splitlines()[-1] if out.strip() else ""
        if rc != 0 or got != want:
            problems.append(f"{labels_} goes to {got!r}, expected {want!r}")
    doc = yaml.safe_load(text)
    inhibit = doc.get("inhibit_rules", [])
    if not any('severity="critical"' in i.get("source_matchers", []) and 'severity="warning"' in i.get("target_matchers", [])
               for i in inhibit):
        problems.append("no inhibition of warnings by criticals")
    for r in doc.get("receivers", []):
        for s in r.get("slack_configs", []):
            if "api_url" in s or not s.get("api_url_file", "").startswith("/etc/alertmanager/secrets/"):
                problems.append(f"receiver {r['name']}: the webhook URL must come from a secret file")
    for route in doc["route"].get("routes", []):
        if route["receiver"] == "critical" and not route.get("repeat_interval", "99h").endswith(("m", "1h")):
            problems.append("critical alerts must repeat at least hourly")
    report(not problems, "Alertmanager routes each severity to its receiver, inhibits warnings, reads URLs from files",
           problems)

    check_alertmanager_live(am_dir, text)

    rc, out = sh(["amtool", "template", "render", f"--template.glob={os.path.join(am_dir, 'templates', '*.tmpl')}",
                  "--template.text", '{{ template "fks.title" . }}|{{ template "fks.text" . }}'])
    report(rc == 0, "the notification templates render", out.splitlines()[-5:])

    # Grafana: 16 panels in 5 rows, every query on the provisioned data source.
    dash = json.load(open(os.path.join(mon, "grafana", "dashboards", "fks-execution.json"), encoding="utf-8"))
    panels = dash.get("panels", [])
    rows = [p["title"] for p in panels if p["type"] == "row"]
    real = [p for p in panels if p["type"] != "row"]
    problems = []
    if rows != ["Overview", "Webhooks", "Orders", "Security", "Bus and exchange health"]:
        problems.append(f"rows are {rows}")
    if len(real) != 16:
        problems.append(f"{len(real)} panels, expected 16")
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    for p in real:
        if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
            problems.append(f"panel {p['title']!r} has no query")
        if p["datasource"]["uid"] != "${datasource}":
            problems.append(f"panel {p['title']!r} does not use the datasource variable")
        if p["gridPos"]["x"] + p["gridPos"]["w"] > 24:
            problems.append(f"panel {p['title']!r} is wider than the dashboard")
    ds = yaml.safe_load(open(os.path.join(mon, "grafana", "provisioning", "datasources.yaml"), encoding="utf-8"))
    uids = {d.get("uid") for d in ds.get("datasources", [])}
    var = next((v for v in dash["templating"]["list"] if v["name"] == "datasource"), None)
    if not var or var.get("current", {}).get("value") not in uids:
        problems.append("the datasource variable's default is not the provisioned data source")
    prov = yaml.safe_load(open(os.path.join(mon, "grafana", "provisioning", "dashboards.yaml"), encoding="utf-8"))
    if prov["providers"][0]["options"]["path"] != "/etc/grafana/dashboards":
        problems.append("the dashboard provider does not read where the dashboards ConfigMap is mounted")
    report(not problems, f"Grafana dashboard: {len(real)} panels in {len(rows)} rows, provisioned", problems)

    # Every PromQL expression of the dashboard parses (promtool checks it as a rule).
    exprs = [t["expr"].replace("$namespace", ".*") for p in real for t in p["targets"]]
    drules = {"groups": [{"name": "dashboard", "rules": [{"record": f"fks:dashboard_query_{i}", "expr": e}
                                                          for i, e in enumerate(exprs)]}]}
    dpath = os.path.join(work, "dashboard-queries.yml")
    with open(dpath, "w", encoding="utf-8") as f:
        yaml.safe_dump(drules, f)
    rc, out = sh(["promtool", "check", "rules", dpath])
    report(rc == 0, f"the dashboard's {len(exprs)} PromQL queries parse", out.splitlines()[-10:])


def check_alertmanager_live(am_dir, text):
    """Runs the real Alertmanager on loopback with FKS's routes and inhibition, its receivers'
    URL files pointing at a local sink, and checks what each receiver gets. Only the waiting
    times are shortened (group_wait / group_interval) so the test takes seconds."""
    import http.server
    import threading
    import urllib.request

    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not binary:
        report(False, "Alertmanager routes and inhibits live", ["prometheus-alertmanager is not installed"])
        return
    got = []

    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((self.path, body.decode("utf-8", "replace")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    port = free_port()
    secrets = os.path.join(am_dir, "secrets")
    os.makedirs(secrets, exist_ok=True)
    for r in ("critical", "warning", "info"):
        with open(os.path.join(secrets, f"{r}-url"), "w") as f:
            f.write(f"http://127.0.0.1:{sink.server_port}/{r}\n")
    cfg = yaml.safe_load(text)
    cfg["templates"] = [os.path.join(am_dir, "templates", "*.tmpl")]
    for route in [cfg["route"]] + cfg["route"].get("routes", []):
        route["group_wait"], route["group_interval"] = "1s", "2s"
    for r in cfg["receivers"]:
        for sc in r.get("slack_configs", []):
            sc["api_url_file"] = sc["api_url_file"].replace("/etc/alertmanager/secrets", secrets)
    live = os.path.join(am_dir, "live.yml")
    with open(live, "w") as f:
        yaml.safe_dump(cfg, f)
    proc = subprocess.Popen([binary, f"--config.file={live}", f"--storage.path={os.path.join(am_dir, 'data')}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    problems = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        alerts = [
            {"labels": {"alertname": "FKSCircuitBreakerOpen", "severity": "critical", "namespace": "fks-a", "scope": "broker:paper"},
             "annotations": {"summary": "breaker open", "description": "d", "runbook": "r"}},
            # held back: a critical alert fires in fks-a
            {"labels": {"alertname": "FKSSlowOrderExecution", "severity": "warning", "namespace": "fks-a"},
             "annotations": {"summary": "slow in a", "description": "d", "runbook": "r"}},
            # delivered: nothing critical in fks-b
            {"labels": {"alertname": "FKSSlowOrderExecution", "severity": "warning", "namespace": "fks-b"},
             "annotations": {"summary": "slow in b", "description": "d", "runbook": "r"}},
            {"labels": {"alertname": "FKSHighLoad", "severity": "info", "namespace": "fks-a"},
             "annotations": {"summary": "high load", "description": "d", "runbook": "r"}},
        ]
        req = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len({p for p, _ in got}) < 3:
            time.sleep(0.2)
        time.sleep(3)                      # anything that should not come has had its chance
        by = {}
        for path, body in got:
            by.setdefault(path, []).append(body)
        crit, warn, info = ("\n".join(by.get(f"/{r}", [])) for r in ("critical", "warning", "info"))
        if "breaker open" not in crit:
            problems.append(f"the critical receiver did not get the breaker alert: {by.get('/critical')}")
        if "slow in b" not in warn:
            problems.append(f"the warning receiver did not get fks-b's warning: {by.get('/warning')}")
        if "slow in a" in warn or "slow in a" in crit + info:
            problems.append("fks-a's warning was delivered although a critical alert fires in fks-a")
        if "high load" not in info:
            problems.append(f"the info receiver did not get the info alert: {by.get('/info')}")
        if "breaker open" in warn + info or "high load" in crit + warn:
            problems.append("an alert reached another severity's receiver")
    except OSError as e:
        problems.append(f"talking to Alertmanager: {e}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        sink.shutdown()
    report(not problems, "Alertmanager (run on loopback) routes each severity to its receiver and holds back "
           "a namespace's warnings while a critical alert fires there", problems)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["render", "schema", "yamllint", "monitoring"])
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"{a.check}-", dir=a.work)
    try:
        {"render": check_render, "schema": check_schema, "yamllint": check_yamllint,
         "monitoring": check_monitoring}[a.check](os.path.abspath(a.source_dir), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = 0
    for i, (ok, what, probs) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {what}")
        for p in probs if not ok else []:
            for line in str(p).splitlines() or [""]:
                print(f"# {line}")
        failed += not ok
    print(f"1..{len(results)}")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
