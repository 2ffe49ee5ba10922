#!/bin/sh
# Creates a demo configuration the first time "make run" is used.
set -eu
bin=$1 data=$2
[ -f "$data/concierge.json" ] && exit 0
echo "First run: creating a demo configuration in $data"
"$bin" -data "$data" domain add example.test
echo "change-me-now" | "$bin" -data "$data" user add admin
echo "  domain example.test, user admin (password change-me-now: change it with"
echo "  \"$bin -data $data user passwd admin\")"
