#!/usr/bin/env bash
# Every man page renders with `man --warnings` and produces no warning at all.
set -euo pipefail
dir=$1
command -v man >/dev/null || { echo "man is not installed (scripts/install-deps installs man-db)"; exit 1; }
status=0
for page in "$dir"/*.[1-8]; do
  err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || {
    echo "$page: man failed: $err"; status=1; continue; }
  if [ -n "$err" ]; then
    echo "$page: warnings:"; echo "$err"; status=1
  else
    echo "$page: ok"
  fi
done
exit $status
