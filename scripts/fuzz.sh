#!/bin/sh
# Runs every Go fuzz test of the project for a while each (default 20s).
# make test already replays the seed corpora and testdata/fuzz.
set -eu
cd "$(dirname "$0")/.."
t=${1:-20s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "$f" | sed 's|^\./||')
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "== $pkg $fn"
		go test -run '^$' -fuzz "^$fn\$" -fuzztime "$t" "$pkg"
	done
done
