#!/usr/bin/env bash
# k8s/secrets.sh - fills the Secret templates of k8s/secrets/ with generated values.
#
#   k8s/secrets.sh [--out DIR] [--force]
#
# Writes DIR/fks-secrets.yaml and DIR/monitoring-secrets.yaml (default DIR:
# k8s/secrets/generated, git-ignored; folder 0700, files 0600) from
# k8s/secrets/*.template.yaml:
#   - PostgreSQL and Redis passwords, the webhook secret, the admin API key and Grafana's
#     admin password: `openssl rand -hex 32`, fresh each time;
#   - the Alertmanager receiver URLs from FKS_ALERT_URL_CRITICAL, FKS_ALERT_URL_WARNING and
#     FKS_ALERT_URL_INFO (https URLs of Slack-compatible incoming webhooks). An unset one stays
#     a placeholder, and k8s/deploy.sh refuses to deploy until it is given.
# Never prints a value. Refuses to overwrite existing files without --force: PostgreSQL keeps
# the password it was initialised with, so a new one needs `ALTER ROLE fks PASSWORD ...` too.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true     # '&' in a URL must stay an '&'

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/secrets/generated"
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "secrets.sh: --out needs a folder" >&2; exit 2; }
           out=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "secrets.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

command -v openssl >/dev/null 2>&1 || { echo "secrets.sh: openssl is needed" >&2; exit 1; }

umask 077
mkdir -p "$out"
chmod 700 "$out"
for f in fks-secrets.yaml monitoring-secrets.yaml; do
  if [ -e "$out/$f" ] && [ "$force" != 1 ]; then
    echo "secrets.sh: $out/$f exists; keeping it (use --force to replace it, and change the" \
         "PostgreSQL role's password to match)" >&2
    exit 1
  fi
done

gen() { openssl rand -hex 32; }

# An URL goes inside a double-quoted YAML string: allow only URL characters, no quotes,
# backslashes or spaces. An unset one stays its placeholder.
declare -A urls=()
for name in CRITICAL WARNING INFO; do
  var=FKS_ALERT_URL_$name
  v=${!var:-}
  if [ -z "$v" ]; then
    urls[$name]=__ALERT_URL_${name}__
  elif [[ "$v" =~ ^https://[A-Za-z0-9._~:/?#@!\$\&\'\(\)*+,\;=%-]+$ ]] && [ ${#v} -le 2048 ]; then
    urls[$name]=$v
  else
    echo "secrets.sh: $var must be an https:// URL without quotes or spaces" >&2
    exit 1
  fi
done

declare -A values=(
  [__POSTGRES_PASSWORD__]=$(gen)
  [__REDIS_PASSWORD__]=$(gen)
  [__WEBHOOK_SECRET__]=$(gen)
  [__ADMIN_KEY__]=$(gen)
  [__GRAFANA_ADMIN_PASSWORD__]=$(gen)
  [__ALERT_URL_CRITICAL__]=${urls[CRITICAL]}
  [__ALERT_URL_WARNING__]=${urls[WARNING]}
  [__ALERT_URL_INFO__]=${urls[INFO]}
)

fill() {
  local template=$1 dest=$2 line key tmp
  tmp=$(mktemp "$out/.tmp.XXXXXX")
  while IFS= read -r line || [ -n "$line" ]; do
    for key in "${!values[@]}"; do
      line=${line//"$key"/"${values[$key]}"}
    done
    printf '%s\n' "$line"
  done <"$template" >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$dest"
}

fill "$here/secrets/fks-secrets.template.yaml" "$out/fks-secrets.yaml"
fill "$here/secrets/monitoring-secrets.template.yaml" "$out/monitoring-secrets.yaml"

echo "wrote $out/fks-secrets.yaml and $out/monitoring-secrets.yaml (mode 600; values not shown)"
left=$(grep -ho '__[A-Z0-9_]*__' "$out"/*.yaml | sort -u | tr '\n' ' ' || true)
if [ -n "$left" ]; then
  echo "still placeholders: $left- set FKS_ALERT_URL_CRITICAL, FKS_ALERT_URL_WARNING and" \
       "FKS_ALERT_URL_INFO and run again with --force; k8s/deploy.sh refuses them until then"
fi
echo "the webhook secret and admin key are in fks-secrets.yaml (webhook-secret, admin-key)"
