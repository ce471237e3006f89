#!/usr/bin/env bash
# k8s/deploy.sh - deploys FKS to the current Kubernetes context, in the order that works.
#
#   k8s/deploy.sh [--overlay dev|prod|keda] [--image REF] [--context NAME]
#                 [--secrets DIR] [--timeout SECONDS] [--dry-run]
#
#   --overlay   which k8s/overlays/ folder (default dev)
#   --image     the FKS image to run, e.g. registry.example.com/fks:0.1.0 (default fks:0.1.0,
#               which only a local cluster that was given the image can pull)
#   --context   kubectl context (default: the current one; it is printed first)
#   --secrets   folder with the filled Secrets of k8s/secrets.sh (default
#               k8s/secrets/generated); when it holds none, the Secrets must already exist
#   --timeout   seconds to wait for each step to become ready (default 300)
#   --dry-run   render, validate offline (schemas, policies, references; k8s/validate), check
#               the Secrets for placeholders, and - only if a cluster answers - a server-side
#               dry run. Changes nothing.
#
# Steps: prerequisites (kubectl, the context, the namespace, a default StorageClass, the
# ingress class, cert-manager, KEDA for the keda overlay, the client CA for tradingview-mtls);
# the Secrets, refusing any that still holds a __PLACEHOLDER__; everything but the FKS
# programs (namespaces, config, PostgreSQL, Redis, policies, ingress, monitoring); waits for
# PostgreSQL and Redis; the migration Job, waiting for it to complete; the bus; the gateway and
# the workers with their autoscalers; waits for every rollout; prints a status summary.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
overlay=dev
image=""
context=""
secrets_dir="$here/secrets/generated"
timeout=300
dry_run=0

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '== %s\n' "$*"; }
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --overlay) [ $# -ge 2 ] || die "--overlay needs a name"; overlay=$2; shift 2 ;;
    --image) [ $# -ge 2 ] || die "--image needs a reference"; image=$2; shift 2 ;;
    --context) [ $# -ge 2 ] || die "--context needs a name"; context=$2; shift 2 ;;
    --secrets) [ $# -ge 2 ] || die "--secrets needs a folder"; secrets_dir=$2; shift 2 ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "$overlay" =~ ^[a-z0-9-]+$ ]] && [ -f "$here/overlays/$overlay/kustomization.yaml" ] \
  || die "no overlay '$overlay' (have: $(ls "$here/overlays" | tr '\n' ' '))"
[[ "$timeout" =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || die "--timeout must be a number of seconds"
if [ -n "$image" ]; then
  [[ "$image" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "--image '$image' is not an image reference"
fi

command -v kubectl >/dev/null 2>&1 || die "kubectl is needed (https://kubernetes.io/docs/tasks/tools/)"
kc=(kubectl)
[ -n "$context" ] && kc+=(--context "$context")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ----------------------------------------------------------------------------- render
# A throwaway kustomization on top of the overlay sets the image, so the repository's
# files never change.
say "render overlay $overlay"
mkdir -p "$work/k"
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - $(realpath --relative-to="$work/k" "$here/overlays/$overlay")"
  if [ -n "$image" ]; then
    name=$image tag=""
    if [[ "$image" == *@* ]]; then name=${image%@*}; tag=${image#*@}; fi
    if [ -z "$tag" ] && [[ "${image##*/}" == *:* ]]; then name=${image%:*}; tag=${image##*:}; fi
    echo "images:"
    echo "  - name: fks"
    echo "    newName: $name"
    if [[ "$tag" == sha256:* ]]; then echo "    digest: $tag"; elif [ -n "$tag" ]; then echo "    newTag: \"$tag\""; fi
  fi
} >"$work/k/kustomization.yaml"
kubectl kustomize "$work/k" >"$work/rendered.yaml" || die "kubectl kustomize failed for overlay $overlay"
echo "$(grep -c '^kind:' "$work/rendered.yaml") objects; image $(grep -m1 -o 'image: [^ ]*fks[^ ]*' "$work/rendered.yaml" | cut -d' ' -f2)"

uses_mtls=0
grep -q 'auth-tls-secret: fks-trading/tradingview-client-ca' "$work/rendered.yaml" && uses_mtls=1
uses_keda=0
grep -q '^kind: ScaledObject' "$work/rendered.yaml" && uses_keda=1

# ----------------------------------------------------------------------------- secrets
# The filled Secrets: present, readable, and free of placeholders. Values are never printed.
secret_files=()
for f in fks-secrets.yaml monitoring-secrets.yaml; do
  [ -f "$secrets_dir/$f" ] && secret_files+=("$secrets_dir/$f")
done
check_placeholders() {
  local f left
  for f in "${secret_files[@]}"; do
    left=$(grep -o '__[A-Z0-9_]*__' "$f" | sort -u | tr '\n' ' ' || true)
    if [ -n "$left" ]; then
      echo "deploy.sh: $f still holds placeholders: $left" >&2
      echo "  run k8s/secrets.sh (set FKS_ALERT_URL_CRITICAL/_WARNING/_INFO for the receivers)" >&2
      return 1
    fi
    if [ "$(stat -c %a "$f")" != 600 ] && [ "$(stat -c %a "$f")" != 400 ]; then
      warn "$f is readable by others (chmod 600 it)"
    fi
  done
}

# ----------------------------------------------------------------------------- dry run
if [ "$dry_run" = 1 ]; then
  say "validate offline (k8s/validate)"
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    || die "node and npm are needed for the offline validation"
  "$here/validate/install.sh" >/dev/null || die "installing the validator's npm packages failed"
  node "$here/validate/validate.mjs" --name "$overlay" \
    --secrets "$here/secrets/fks-secrets.template.yaml,$here/secrets/monitoring-secrets.template.yaml" \
    "$work/rendered.yaml" >"$work/validate.tap" || { grep -A20 '^not ok' "$work/validate.tap" >&2; die "validation failed"; }
  echo "$(grep -c '^ok' "$work/validate.tap") checks passed"
  if [ ${#secret_files[@]} -gt 0 ]; then
    check_placeholders && echo "secrets in $secrets_dir: no placeholders" || warn "secrets are not ready"
  else
    warn "no filled Secrets in $secrets_dir (run k8s/secrets.sh before deploying)"
  fi
  if "${kc[@]}" version --request-timeout=5s >/dev/null 2>&1; then
    say "server-side dry run against context $("${kc[@]}" config current-context)"
    "${kc[@]}" apply --dry-run=server --server-side --field-manager=fks-deploy -f "$work/rendered.yaml" >/dev/null \
      || die "the API server refused the manifests (see above)"
    echo "the API server accepts every object"
  else
    echo "no cluster answered: server-side dry run skipped"
  fi
  say "dry run done: nothing was changed"
  exit 0
fi

# ----------------------------------------------------------------------------- prerequisites
say "prerequisites"
current=$("${kc[@]}" config current-context 2>/dev/null) || die "no kubectl context (kubectl config get-contexts)"
echo "context: $current"
"${kc[@]}" version --request-timeout=10s >/dev/null 2>&1 || die "the cluster of context '$current' does not answer"
for ns in fks-trading monitoring; do
  if "${kc[@]}" get namespace "$ns" >/dev/null 2>&1; then
    echo "namespace $ns: exists"
  else
    echo "namespace $ns: will be created"
  fi
done
default_sc=$("${kc[@]}" get storageclass -o jsonpath='{range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.metadata.name}{" "}{end}' 2>/dev/null || true)
[ -n "$default_sc" ] || die "no default StorageClass: PostgreSQL, Redis and Prometheus claim volumes without naming one (mark one default: kubectl patch storageclass NAME -p '{\"metadata\":{\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}')"
echo "default StorageClass: $default_sc"
"${kc[@]}" get ingressclass nginx >/dev/null 2>&1 \
  && echo "IngressClass nginx: present" \
  || warn "no IngressClass 'nginx': the Ingresses will not be served (install ingress-nginx)"
if "${kc[@]}" get crd clusterissuers.cert-manager.io >/dev/null 2>&1; then
  for issuer in $(grep -o 'cert-manager.io/cluster-issuer: .*' "$work/rendered.yaml" | awk '{print $2}' | sort -u); do
    "${kc[@]}" get clusterissuer "$issuer" >/dev/null 2>&1 \
      && echo "ClusterIssuer $issuer: present" \
      || warn "no ClusterIssuer '$issuer': TLS certificates will not be issued"
  done
else
  warn "cert-manager is not installed: TLS certificates will not be issued"
fi
if [ "$uses_keda" = 1 ]; then
  "${kc[@]}" get crd scaledobjects.keda.sh >/dev/null 2>&1 || die "overlay $overlay needs KEDA (CRD scaledobjects.keda.sh is missing)"
  echo "KEDA: present"
fi
if [ "$uses_mtls" = 1 ]; then
  "${kc[@]}" -n fks-trading get secret tradingview-client-ca >/dev/null 2>&1 \
    || die "the tradingview-mtls component needs Secret fks-trading/tradingview-client-ca (key ca.crt)"
  echo "TradingView client CA: present"
fi
"${kc[@]}" get apiservice v1beta1.metrics.k8s.io >/dev/null 2>&1 \
  || warn "metrics-server is missing: CPU and memory autoscaling will not work"

if [ ${#secret_files[@]} -gt 0 ]; then
  check_placeholders || die "refusing to deploy Secrets that hold placeholders"
  echo "secrets: ${secret_files[*]}"
else
  for s in fks-trading/fks-secrets monitoring/alertmanager-receivers monitoring/grafana-admin; do
    "${kc[@]}" -n "${s%%/*}" get secret "${s#*/}" >/dev/null 2>&1 \
      || die "Secret $s does not exist and $secrets_dir holds no filled Secrets: run k8s/secrets.sh"
  done
  echo "secrets: already in the cluster"
fi

apply() { "${kc[@]}" apply --server-side --force-conflicts --field-manager=fks-deploy "$@"; }
fks_programs="gateway,bus,signal,data,execution,ai,migrate"

# ----------------------------------------------------------------------------- apply
say "namespaces and secrets"
# The namespaces are the only objects with a Pod Security label; they must exist first.
apply -f "$work/rendered.yaml" -l pod-security.kubernetes.io/enforce=restricted
for f in "${secret_files[@]}"; do apply -f "$f" >/dev/null; echo "secret file applied: $(basename "$f")"; done

say "configuration, PostgreSQL, Redis, policies, ingress, monitoring"
apply -f "$work/rendered.yaml" -l "app.kubernetes.io/component notin ($fks_programs)"
"${kc[@]}" -n fks-trading rollout status statefulset/postgres --timeout="${timeout}s"
"${kc[@]}" -n fks-trading rollout status statefulset/redis --timeout="${timeout}s"

say "migrations"
# A Job's pod template cannot change: the previous run's Job goes first.
"${kc[@]}" -n fks-trading delete job fks-migrate --ignore-not-found --wait=true >/dev/null
apply -f "$work/rendered.yaml" -l app.kubernetes.io/component=migrate
if ! "${kc[@]}" -n fks-trading wait --for=condition=complete job/fks-migrate --timeout="${timeout}s"; then
  "${kc[@]}" -n fks-trading logs job/fks-migrate --tail=50 >&2 || true
  die "the migration Job did not complete (its log is above)"
fi
"${kc[@]}" -n fks-trading logs job/fks-migrate --tail=5 || true

say "bus"
apply -f "$work/rendered.yaml" -l app.kubernetes.io/component=bus
"${kc[@]}" -n fks-trading rollout status deployment/fks-bus --timeout="${timeout}s"

say "gateway and workers"
apply -f "$work/rendered.yaml" -l 'app.kubernetes.io/component in (gateway,signal,data,execution,ai)'
for d in fks-gateway fks-signal fks-data fks-execution fks-ai; do
  "${kc[@]}" -n fks-trading rollout status "deployment/$d" --timeout="${timeout}s"
done
for d in prometheus alertmanager grafana; do
  "${kc[@]}" -n monitoring rollout status "deployment/$d" --timeout="${timeout}s" || warn "monitoring/$d is not ready"
done

# ----------------------------------------------------------------------------- summary
say "status"
"${kc[@]}" -n fks-trading get deployments,statefulsets,hpa,pdb -o wide 2>/dev/null || true
"${kc[@]}" -n fks-trading get ingress 2>/dev/null || true
"${kc[@]}" -n monitoring get deployments 2>/dev/null || true
[ "$uses_keda" = 1 ] && { "${kc[@]}" -n fks-trading get scaledobjects 2>/dev/null || true; }
hosts=$(grep -o 'host: [a-z0-9.-]*' "$work/rendered.yaml" | awk '{print $2}' | sort -u | tr '\n' ' ')
echo
echo "FKS is deployed (overlay $overlay, context $current)."
echo "hosts: $hosts"
echo "TradingView webhook URL: https://$("${kc[@]}" -n fks-trading get ingress fks-webhook -o jsonpath='{.spec.rules[0].host}' 2>/dev/null)/webhook"
echo "the webhook secret and admin key: kubectl -n fks-trading get secret fks-secrets -o jsonpath='{.data.webhook-secret}' | base64 -d"
