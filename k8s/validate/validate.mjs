// validate.mjs - checks rendered FKS manifests offline, as a TAP producer.
//
//   node validate.mjs --name OVERLAY --secrets TEMPLATE.yaml[,...] RENDERED.yaml
//
// RENDERED.yaml is the output of `kubectl kustomize k8s/overlays/OVERLAY`; the secret
// templates (k8s/secrets/*.template.yaml) stand in for the Secrets that k8s/secrets.sh
// writes and k8s/deploy.sh applies outside kustomize. Three kinds of checks, one TAP line each:
//
//   schema     every object against the Kubernetes 1.27+ OpenAPI schemas (kubernetes-models)
//              and KEDA's CRD schemas; an object of an unknown apiVersion/kind fails.
//   policy     what the issue asks of every pod: non-root, read-only root filesystem, no
//              privilege escalation, capabilities dropped, RuntimeDefault seccomp, requests and
//              limits; FKS programs also /health liveness, /ready readiness, Prometheus scrape
//              annotations on a declared port, and a grace period that fits the SIGTERM drain.
//   references what kubectl apply would accept but the cluster would not run: Services,
//              PDBs, NetworkPolicies selecting no pod; Ingress backends, HPA/ScaledObject
//              targets, ConfigMaps, Secrets and their keys that do not exist; HPA External
//              metrics no prometheus-adapter rule serves.
//
// Exit status 0 when every line is "ok". The schemas do not reject unknown fields (the OpenAPI
// documents have no additionalProperties: false); the policy and reference checks catch the
// typos that matter here because they look for the fields they need.
import { readFileSync } from "node:fs";
import { parseAllDocuments, parse as parseYaml } from "yaml";

const args = process.argv.slice(2);
let name = "manifests";
let secretFiles = [];
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--name") name = args[++i];
  else if (args[i] === "--secrets") secretFiles = args[++i].split(",").filter(Boolean);
  else files.push(args[i]);
}
if (files.length !== 1) {
  console.error("usage: node validate.mjs --name NAME --secrets T1.yaml,T2.yaml RENDERED.yaml");
  process.exit(2);
}

let n = 0;
let failed = 0;
function report(okay, what, problems) {
  n++;
  if (okay) {
    console.log(`ok ${n} - ${name}: ${what}`);
  } else {
    failed++;
    console.log(`not ok ${n} - ${name}: ${what}`);
    for (const p of problems.slice(0, 20)) console.log(`  # ${p}`);
    if (problems.length > 20) console.log(`  # ... and ${problems.length - 20} more`);
  }
}

function loadDocs(path) {
  const docs = [];
  for (const d of parseAllDocuments(readFileSync(path, "utf8"))) {
    if (d.errors.length) throw new Error(`${path}: ${d.errors[0].message}`);
    const obj = d.toJS();
    if (obj) docs.push(obj);
  }
  return docs;
}

const objects = loadDocs(files[0]);
const secrets = secretFiles.flatMap(loadDocs);
if (objects.length === 0) {
  report(false, "rendered output has objects", [`${files[0]} holds no object`]);
  process.exit(1);
}

const id = (o) => `${o.kind}/${o.metadata?.namespace ?? "-"}/${o.metadata?.name}`;
const nsOf = (o) => o.metadata?.namespace ?? "";

// ------------------------------------------------------------------------------ schema
async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z]+$/.test(kind))
    return null;
  let spec;
  if (apiVersion.endsWith("keda.sh/v1alpha1")) spec = `@kubernetes-models/keda/${apiVersion}/${kind}`;
  else if (!apiVersion.includes("/")) spec = `kubernetes-models/${apiVersion}/${kind}`;
  else spec = `kubernetes-models/${apiVersion}/${kind}`;
  try {
    const mod = await import(spec);
    return mod[kind] ?? null;
  } catch {
    return null;
  }
}

for (const o of [...objects, ...secrets]) {
  const Model = await modelFor(o.apiVersion, o.kind);
  if (!Model) {
    report(false, `schema ${id(o)}`, [`no schema for apiVersion ${o.apiVersion}, kind ${o.kind}`]);
    continue;
  }
  try {
    new Model(o).validate();
    report(true, `schema ${id(o)}`, []);
  } catch (e) {
    const errs = (e.errors ?? []).map((x) => `${x.instancePath || "/"} ${x.message}`);
    report(false, `schema ${id(o)}`, errs.length ? errs : [String(e.message ?? e)]);
  }
}

// ------------------------------------------------------------------------------ policy
const WORKLOADS = new Set(["Deployment", "StatefulSet", "Job", "DaemonSet"]);
const workloads = objects.filter((o) => WORKLOADS.has(o.kind));
const podOf = (w) => w.spec?.template ?? {};
const isFks = (c) => /^(.*\/)?fks(:|@|$)/.test(c.image ?? "");

function containerProblems(w, pod, c) {
  const p = [];
  const psc = pod.spec?.securityContext ?? {};
  const sc = c.securityContext ?? {};
  const where = `container ${c.name}`;
  if (sc.allowPrivilegeEscalation !== false) p.push(`${where}: allowPrivilegeEscalation must be false`);
  if (sc.readOnlyRootFilesystem !== true) p.push(`${where}: readOnlyRootFilesystem must be true`);
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) p.push(`${where}: capabilities.drop must hold ALL`);
  if ((sc.capabilities?.add ?? []).length) p.push(`${where}: no capability may be added`);
  if (sc.privileged) p.push(`${where}: privileged`);
  if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) p.push(`${where}: runAsNonRoot must be true`);
  const uid = sc.runAsUser ?? psc.runAsUser;
  if (uid === 0) p.push(`${where}: runs as uid 0`);
  const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
  if (seccomp !== "RuntimeDefault") p.push(`${where}: seccompProfile must be RuntimeDefault`);
  for (const r of ["cpu", "memory"]) {
    if (!c.resources?.requests?.[r]) p.push(`${where}: no ${r} request`);
    if (!c.resources?.limits?.[r]) p.push(`${where}: no ${r} limit`);
  }
  if (isFks(c)) {
    const prog = (c.command ?? c.args ?? [])[0];
    if (!prog || !/^fks(-[a-z]+)?$/.test(prog)) p.push(`${where}: args must name the FKS program, got ${prog}`);
    if (w.kind !== "Job") {
      const ports = new Map((c.ports ?? []).map((x) => [x.name, x.containerPort]));
      const probePort = (pr) => (typeof pr?.httpGet?.port === "string" ? ports.get(pr.httpGet.port) : pr?.httpGet?.port);
      if (c.livenessProbe?.httpGet?.path !== "/health") p.push(`${where}: livenessProbe must GET /health`);
      if (c.readinessProbe?.httpGet?.path !== "/ready") p.push(`${where}: readinessProbe must GET /ready`);
      for (const [k, pr] of [["liveness", c.livenessProbe], ["readiness", c.readinessProbe]])
        if (pr && !probePort(pr)) p.push(`${where}: ${k} probe names a port the container does not declare`);
      const ann = pod.metadata?.annotations ?? {};
      if (ann["prometheus.io/scrape"] !== "true") p.push(`pod: prometheus.io/scrape must be "true"`);
      if (ann["prometheus.io/path"] !== "/metrics") p.push(`pod: prometheus.io/path must be /metrics`);
      const declared = [...ports.values()].map(String);
      if (!declared.includes(ann["prometheus.io/port"])) p.push(`pod: prometheus.io/port ${ann["prometheus.io/port"]} is not a declared container port`);
      if (probePort(c.livenessProbe) && String(probePort(c.livenessProbe)) !== ann["prometheus.io/port"])
        p.push(`pod: scrape port differs from the ops port the probes use`);
      const grace = pod.spec?.terminationGracePeriodSeconds ?? 30;
      const pre = c.lifecycle?.preStop?.exec?.command;
      const preSleep = pre && pre[0] === "sleep" ? Number(pre[1]) : 0;
      // the bus drains up to FKS_BUS_DRAIN_TIMEOUT (15 s); workers and the gateway finish a
      // batch or request and leave: each needs at least 20 s after any preStop pause.
      if (grace - preSleep < 20) p.push(`pod: terminationGracePeriodSeconds ${grace} leaves under 20 s to drain after preStop`);
    }
    const mounts = new Set((c.volumeMounts ?? []).map((m) => m.mountPath));
    if (!mounts.has("/run/secrets/fks")) p.push(`${where}: secrets must be mounted as files at /run/secrets/fks`);
    for (const e of c.env ?? []) {
      if (/^FKS_.*(PG_URL|PASSWORD|SECRET|KEY)$/.test(e.name) && !e.name.endsWith("_FILE"))
        p.push(`${where}: ${e.name} must come from a file (${e.name}_FILE), not the environment`);
    }
  }
  return p;
}

for (const w of workloads) {
  const pod = podOf(w);
  const problems = [];
  if (pod.spec?.hostNetwork || pod.spec?.hostPID || pod.spec?.hostIPC) problems.push("pod: host namespaces");
  for (const v of pod.spec?.volumes ?? []) if (v.hostPath) problems.push(`pod: hostPath volume ${v.name}`);
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  if (!all.length) problems.push("pod: no container");
  for (const c of all) problems.push(...containerProblems(w, pod, c));
  const names = new Set((pod.spec?.volumes ?? []).map((v) => v.name));
  const claims = new Set((w.spec?.volumeClaimTemplates ?? []).map((v) => v.metadata?.name));
  for (const c of all)
    for (const m of c.volumeMounts ?? [])
      if (!names.has(m.name) && !claims.has(m.name)) problems.push(`container ${c.name}: mounts unknown volume ${m.name}`);
  if (w.kind === "Deployment" && w.metadata?.name === "fks-bus") {
    if (w.spec?.replicas !== 1) problems.push("the bus must run exactly one replica");
    if (w.spec?.strategy?.type !== "Recreate") problems.push("the bus must be replaced with Recreate");
  }
  report(problems.length === 0, `policy ${id(w)}`, problems);
}

// ------------------------------------------------------------------------- references
const pods = workloads.map((w) => ({
  w, ns: nsOf(w), labels: podOf(w).metadata?.labels ?? {},
  containers: podOf(w).spec?.containers ?? [],
}));

function matches(sel, labels) {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
const podsIn = (ns, sel) => pods.filter((p) => p.ns === ns && matches(sel, p.labels));

// Services: selector matches pods, target ports exist on them.
{
  const problems = [];
  for (const s of objects.filter((o) => o.kind === "Service")) {
    const sel = { matchLabels: s.spec?.selector ?? {} };
    const hits = podsIn(nsOf(s), sel);
    if (!Object.keys(sel.matchLabels).length) problems.push(`${id(s)}: no selector`);
    else if (!hits.length) problems.push(`${id(s)}: selector matches no pod`);
    for (const port of s.spec?.ports ?? []) {
      if (typeof port.targetPort !== "string") continue;
      for (const h of hits)
        if (!h.containers.some((c) => (c.ports ?? []).some((x) => x.name === port.targetPort)))
          problems.push(`${id(s)}: ${h.w.metadata.name} has no port named ${port.targetPort}`);
    }
  }
  report(problems.length === 0, "references: Service selectors and target ports", problems);
}

// PodDisruptionBudgets and NetworkPolicies select pods that exist; every value of an In list
// names some pod (a typo there silently opens or closes a path).
{
  const problems = [];
  for (const b of objects.filter((o) => o.kind === "PodDisruptionBudget"))
    if (!podsIn(nsOf(b), b.spec?.selector).length) problems.push(`${id(b)}: selects no pod`);
  const checkSel = (np, sel, where, ns) => {
    if (!sel || (!sel.matchLabels && !sel.matchExpressions)) return;
    if (!podsIn(ns, sel).length) problems.push(`${id(np)}: ${where} selects no pod`);
    for (const e of sel.matchExpressions ?? [])
      if (e.operator === "In")
        for (const v of e.values)
          if (!pods.some((p) => p.ns === ns && p.labels[e.key] === v))
            problems.push(`${id(np)}: ${where} names ${e.key}=${v}, which no pod has`);
  };
  for (const np of objects.filter((o) => o.kind === "NetworkPolicy")) {
    checkSel(np, np.spec?.podSelector, "podSelector", nsOf(np));
    for (const dir of ["ingress", "egress"])
      for (const rule of np.spec?.[dir] ?? [])
        for (const peer of [...(rule.from ?? []), ...(rule.to ?? [])])
          if (peer.podSelector && !peer.namespaceSelector) checkSel(np, peer.podSelector, `${dir} peer`, nsOf(np));
  }
  report(problems.length === 0, "references: PodDisruptionBudget and NetworkPolicy selectors", problems);
}

// Ingress backends.
{
  const problems = [];
  const services = objects.filter((o) => o.kind === "Service");
  for (const ing of objects.filter((o) => o.kind === "Ingress")) {
    if (!(ing.spec?.tls ?? []).length) problems.push(`${id(ing)}: no TLS`);
    for (const r of ing.spec?.rules ?? [])
      for (const p of r.http?.paths ?? []) {
        const b = p.backend?.service;
        const s = services.find((x) => nsOf(x) === nsOf(ing) && x.metadata.name === b?.name);
        if (!s) { problems.push(`${id(ing)}: backend service ${b?.name} does not exist`); continue; }
        const ok = (s.spec.ports ?? []).some((x) => (b.port?.name ? x.name === b.port.name : x.port === b.port?.number));
        if (!ok) problems.push(`${id(ing)}: service ${b.name} has no port ${b.port?.name ?? b.port?.number}`);
        if (p.path === "/metrics" || p.path === "/ready") problems.push(`${id(ing)}: routes ${p.path} to the Internet`);
      }
  }
  report(problems.length === 0, "references: Ingress backends", problems);
}

// Scale targets, and External metrics served by the adapter's rules.
{
  const problems = [];
  const deployments = objects.filter((o) => o.kind === "Deployment");
  const adapterMetrics = new Set();
  let haveAdapter = false;
  for (const cm of objects.filter((o) => o.kind === "ConfigMap" && /^prometheus-adapter-config/.test(o.metadata.name))) {
    haveAdapter = true;
    const cfg = parseYaml(cm.data?.["config.yaml"] ?? "") ?? {};
    for (const r of cfg.externalRules ?? []) if (r.name?.as) adapterMetrics.add(r.name.as);
  }
  for (const h of objects.filter((o) => o.kind === "HorizontalPodAutoscaler" || o.kind === "ScaledObject")) {
    const t = h.spec?.scaleTargetRef;
    if (!deployments.some((d) => nsOf(d) === nsOf(h) && d.metadata.name === t?.name))
      problems.push(`${id(h)}: scale target ${t?.kind ?? "Deployment"}/${t?.name} does not exist`);
    if (t?.name === "fks-bus") problems.push(`${id(h)}: the bus must never be autoscaled`);
    for (const m of h.spec?.metrics ?? []) {
      if (m.type !== "External") continue;
      if (!haveAdapter) problems.push(`${id(h)}: External metric ${m.external.metric.name} but no prometheus-adapter in this overlay`);
      else if (!adapterMetrics.has(m.external.metric.name)) problems.push(`${id(h)}: no adapter rule serves ${m.external.metric.name}`);
    }
  }
  const scaled = objects.filter((o) => o.kind === "ScaledObject").map((o) => o.spec.scaleTargetRef.name);
  for (const h of objects.filter((o) => o.kind === "HorizontalPodAutoscaler"))
    if (scaled.includes(h.spec.scaleTargetRef.name)) problems.push(`${id(h)}: also scaled by a KEDA ScaledObject`);
  if (haveAdapter && objects.some((o) => o.kind === "ScaledObject"))
    problems.push("prometheus-adapter and KEDA both claim external.metrics.k8s.io");
  report(problems.length === 0, "references: autoscaling targets and metrics", problems);
}

// ConfigMaps and Secrets the pods use exist (Secrets: in the templates, or made by
// cert-manager for an Ingress), with the keys they name.
{
  const problems = [];
  const cms = new Map(objects.filter((o) => o.kind === "ConfigMap").map((o) => [`${nsOf(o)}/${o.metadata.name}`, o]));
  const secs = new Map(secrets.map((o) => [`${nsOf(o)}/${o.metadata.name}`, o]));
  const tls = new Set(objects.filter((o) => o.kind === "Ingress").flatMap((i) => (i.spec.tls ?? []).map((t) => `${nsOf(i)}/${t.secretName}`)));
  const keysOf = (o) => new Set([...Object.keys(o.data ?? {}), ...Object.keys(o.stringData ?? {})]);
  const needCm = (ns, name, key, where) => {
    const cm = cms.get(`${ns}/${name}`);
    if (!cm) problems.push(`${where}: ConfigMap ${ns}/${name} does not exist`);
    else if (key && !keysOf(cm).has(key)) problems.push(`${where}: ConfigMap ${name} has no key ${key}`);
  };
  const needSecret = (ns, name, key, where) => {
    const s = secs.get(`${ns}/${name}`);
    if (!s) problems.push(`${where}: Secret ${ns}/${name} is in no template (k8s/secrets/)`);
    else if (key && !keysOf(s).has(key)) problems.push(`${where}: Secret ${name} has no key ${key}`);
  };
  for (const w of workloads) {
    const ns = nsOf(w);
    const spec = podOf(w).spec ?? {};
    for (const v of spec.volumes ?? []) {
      if (v.configMap) for (const it of v.configMap.items ?? [{}]) needCm(ns, v.configMap.name, it.key, id(w));
      if (v.secret) for (const it of v.secret.items ?? [{}]) needSecret(ns, v.secret.secretName, it.key, id(w));
    }
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
      for (const e of c.envFrom ?? []) {
        if (e.configMapRef) needCm(ns, e.configMapRef.name, null, id(w));
        if (e.secretRef) needSecret(ns, e.secretRef.name, null, id(w));
      }
      for (const e of c.env ?? []) {
        const r = e.valueFrom ?? {};
        if (r.configMapKeyRef) needCm(ns, r.configMapKeyRef.name, r.configMapKeyRef.key, id(w));
        if (r.secretKeyRef) needSecret(ns, r.secretKeyRef.name, r.secretKeyRef.key, id(w));
      }
    }
    for (const c of w.spec?.template?.spec?.containers ?? [])
      for (const e of c.env ?? [])
        if (e.name.endsWith("_FILE") && typeof e.value === "string" && e.value.startsWith("/run/secrets/fks/")) {
          const key = e.value.slice("/run/secrets/fks/".length);
          const vol = (spec.volumes ?? []).find((v) => v.secret && (c.volumeMounts ?? []).some((m) => m.name === v.name && m.mountPath === "/run/secrets/fks"));
          const paths = new Set((vol?.secret?.items ?? []).map((it) => it.path));
          if (!vol || (vol.secret.items && !paths.has(key))) problems.push(`${id(w)}: ${e.name} names ${e.value}, which the secrets volume does not hold`);
        }
  }
  for (const t of tls) if (secs.has(t)) problems.push(`TLS Secret ${t} is cert-manager's, not a template's`);
  report(problems.length === 0, "references: ConfigMaps, Secrets and their keys", problems);
}

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
