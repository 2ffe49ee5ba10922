#!/bin/sh
# Prepares the data directory the first time "make run" is used: the setup
# page on http://127.0.0.1:8080/ (plain HTTP, this machine only) and, when
# not run as root, every service on an unprivileged port. The box itself
# is then set up in the page's first-run wizard.
set -eu
bin=$1 data=$2
[ -f "$data/concierge.json" ] && exit 0
echo "First run: preparing $data"
set_key() { "$bin" -data "$data" config set "$1" "$2" >/dev/null; }
set_key web.dev_listen 127.0.0.1:8080
if [ "$(id -u)" != 0 ]; then
	echo "  not root: SMTP on 2525/2587/2465, POP3 on 2110/2995, HTTPS on 8443, NetBIOS off"
	set_key smtp.mx_listen :2525
	set_key smtp.submission_listen :2587
	set_key smtp.submission_tls_listen :2465
	set_key pop3.listen :2110
	set_key pop3.tls_listen :2995
	set_key web.https_listen :8443
	set_key web.http_listen ""
	set_key nbt.enabled false
fi
echo "  then open http://127.0.0.1:8080/ in a browser: the setup page asks for the rest"
