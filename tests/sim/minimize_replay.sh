#!/bin/sh
# A failing seed's minimization through kvc-sim itself: it prints "minimized: K of N faults
# needed" with K < N, and the replay line it prints, run as printed, applies exactly K faults and
# fails with the same violation as the minimized run. Usage: minimize_replay.sh KVC_SIM ARGS-OF-A-FAILING-SEED...
set -u
sim=$1
shift
out=$(mktemp) || exit 1
trap 'rm -f "$out" "$out.replay"' EXIT
if "$sim" "$@" >/dev/null 2>"$out"; then
  echo "minimize_replay: expected a violation from: kvc-sim $*" >&2
  exit 1
fi
counts=$(sed -n 's/^kvc-sim: minimized: \([0-9]*\) of \([0-9]*\) faults needed.*/\1 \2/p' "$out")
if [ -z "$counts" ]; then
  echo "minimize_replay: no \"minimized:\" line:" >&2
  cat "$out" >&2
  exit 1
fi
set -- $counts
kept=$1
all=$2
echo "minimized: $kept of $all faults"
if [ "$kept" -ge "$all" ]; then
  echo "minimize_replay: nothing was minimized ($kept of $all)" >&2
  exit 1
fi
violation=$(sed -n 's/^kvc-sim: the minimized run: VIOLATION: //p' "$out")
replay=$(sed -n 's/^kvc-sim: replay the minimized run with: kvc-sim //p' "$out")
if [ -z "$violation" ] || [ -z "$replay" ]; then
  echo "minimize_replay: no violation or replay line for the minimized run:" >&2
  cat "$out" >&2
  exit 1
fi
echo "replay: kvc-sim $replay"
# shellcheck disable=SC2086 # the replay line is words
if "$sim" $replay >/dev/null 2>"$out.replay"; then
  echo "minimize_replay: the replay passed" >&2
  exit 1
fi
if ! grep -F -e "VIOLATION" "$out.replay" | grep -F -q -e "$violation"; then
  echo "minimize_replay: the replay did not fail with: $violation" >&2
  grep -F VIOLATION "$out.replay" >&2
  exit 1
fi
applied=$(grep -c " fault #[0-9]* " "$out.replay")
if [ "$applied" -ne "$kept" ]; then
  echo "minimize_replay: the replay applied $applied faults, not the $kept kept" >&2
  exit 1
fi
if grep -q "^kvc-sim: minimizing" "$out.replay"; then
  echo "minimize_replay: a replay with a fault filter minimized again" >&2
  exit 1
fi
echo "the replay fails the same way: $violation"
