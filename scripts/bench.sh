#!/bin/sh
# Side-by-side benchmarks against the reference servers (Postfix, Dovecot,
# Samba nmbd), each in network namespaces of its own, and the password-guessing
# bench (memory and logins under attack). Figures, not pass or
# fail: see docs/benchmarks*.md for what was measured before.
set -eu
cd "$(dirname "$0")/.."
status=0
for d in cmd/bench/*/; do
	pkg=./${d%/}
	if ls "$d"*_test.go >/dev/null 2>&1 && grep -q '^func Benchmark' "$d"*_test.go; then
		echo "== $pkg (go test -bench)"
		go test -run '^$' -bench . -benchtime 1x -timeout 30m "$pkg" || status=1
	elif ls "$d"*.go >/dev/null 2>&1 && grep -q '^package main' "$d"*.go; then
		echo "== $pkg (go run)"
		go run "$pkg" || status=1
	fi
done
exit $status
