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
# The NetBIOS datagram service and session gateway benchmarks live with
# their packages. The gateway's paths run in rounds, each path's MB/s
# divided by the direct path's of the same round, since single runs
# swing by ±10 points on a shared machine.
echo "== ./nbt/datagram (go test -bench)"
go test -run '^$' -bench . -count 3 ./nbt/datagram || status=1
echo "== ./nbt/session (go test -bench Gateway, 7 rounds)"
rounds=$(mktemp)
trap 'rm -f "$rounds"' EXIT
for round in 1 2 3 4 5 6 7; do
	go test -run '^$' -bench Gateway -benchtime 1s -timeout 2m ./nbt/session >>"$rounds" || status=1
done
awk '
	/^BenchmarkGatewayThroughput\// {
		split($1, a, "/"); sub(/-[0-9]+$/, "", a[2]); mb[a[2]] = $5
		if (a[2] == "direct") { n++ }
		else if (mb["direct"] > 0) { r[a[2], n] = $5 / mb["direct"]; paths[a[2]] = 1 }
		print
	}
	END {
		for (p in paths) {
			k = 0
			for (i = 1; i <= n; i++) if ((p, i) in r) v[++k] = r[p, i]
			for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			printf "%-14s ÷ direct: median %.0f %% of %d rounds (%.0f–%.0f %%)\n", p, 100 * v[int((k + 1) / 2)], k, 100 * v[1], 100 * v[k]
		}
	}' "$rounds"
exit $status
