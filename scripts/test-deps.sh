#!/bin/sh
# Installs the Debian packages named on the command line that are missing.
# apt-get is retried once after "apt-get update", as the package lists of
# a fresh machine may be stale or absent.
set -eu
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks a question when installed; it runs only as private test instances.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections 2>/dev/null || true
# shellcheck disable=SC2086
if ! apt-get install -y -q $missing; then
	apt-get update -q
	apt-get install -y -q $missing
fi
