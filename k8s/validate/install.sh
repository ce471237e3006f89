#!/usr/bin/env bash
# k8s/validate/install.sh [DIR] - makes the offline manifest validator runnable in DIR.
#
# Copies validate.mjs, package.json and package-lock.json into DIR (default: this folder) and
# installs the exact npm packages of the lock file there (`npm ci`) when they are missing or the
# lock file changed. Prints the path of DIR/validate.mjs. Later runs with an unchanged lock
# file touch nothing and need no network.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$src}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$dir" != "$src" ]; then
  cp -f "$src/validate.mjs" "$src/package.json" "$src/package-lock.json" "$dir/"
fi
stamp="$dir/node_modules/.fks-lock.sha256"
want=$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  command -v npm >/dev/null 2>&1 || { echo "install.sh: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
    || { echo "install.sh: npm ci failed in $dir" >&2; exit 1; }
  echo "$want" >"$stamp"
fi
echo "$dir/validate.mjs"
