#!/bin/sh
# Installs Node.js and npm (Debian's packages) if they are missing, then the
# npm packages locked in DIR/package-lock.json into DIR/node_modules with
# "npm ci" — again only when the lock file changed since the last install.
# Browsers come from Debian (chromium), never from "playwright install".
set -eu
dir=$1
here=$(dirname "$0")
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	"$here/test-deps.sh" nodejs npm
fi
stamp="$dir/node_modules/.package-lock.json"
if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
	exit 0
fi
echo "npm ci in $dir"
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts)
