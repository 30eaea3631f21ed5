#!/usr/bin/env bash
# The packaged service's files hold: the systemd unit passes `systemd-analyze verify` (with
# ExecStart pointed at the built kvc-node), and the commented sample config is one that
# kvc-node accepts and runs with: a member started from it (with its addresses and data
# directory overridden on the command line, which win over the file) becomes ready and stops
# cleanly (exit 0) on SIGTERM.
#   service_files.sh UNIT SAMPLE_CONF KVC_NODE KVC_CTL
set -euo pipefail
unit=$1 conf=$2 node=$3 ctl=$4
tmp=$(mktemp -d /tmp/kvc-service-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# 1. The unit, as systemd reads it (an instance of the template).
sed "s|^ExecStart=/usr/bin/kvc-node|ExecStart=$node|" "$unit" > "$tmp/kvc-node@m1.service"
out=$(systemd-analyze verify --man=no "$tmp/kvc-node@m1.service" 2>&1) || {
  echo "systemd-analyze verify failed: $out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify complained about $unit:" >&2
  echo "$out" >&2
  exit 1
fi

# 2. The sample config runs.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peer=127.0.0.1:$(port)
client=127.0.0.1:$(port)
"$node" --config "$conf" --data-dir "$tmp/m1" --listen-peer "$peer" --listen-client "$client" \
  --initial-cluster "m1=$peer" --log-file "$tmp/log" &
pid=$!
ready=0
for _ in $(seq 1 100); do  # up to 10 s
  if "$ctl" --endpoints "$client" --timeout 1s status >/dev/null 2>&1; then ready=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ "$ready" -ne 1 ]; then
  echo "kvc-node did not become ready with $conf:" >&2
  cat "$tmp/log" >&2 || true
  exit 1
fi
members=$("$ctl" --endpoints "$client" member list)
grep -qw "m1" <<<"$members" || {
  echo "the member is not named by the sample config: $members" >&2; exit 1; }
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then
  echo "kvc-node stopped with $rc on SIGTERM" >&2
  exit 1
fi
echo "service files ok"
