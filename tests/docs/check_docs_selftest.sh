#!/usr/bin/env bash
# Shows that check_docs.sh has teeth: it passes on the real documentation of a binary, and
# fails, naming the option, when one option is removed from the man page or from a completion.
#   check_docs_selftest.sh CHECK_DOCS BINARY SOURCE_DIR
set -euo pipefail
check=$1 bin=$2 src=$3
name=$(basename "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src/man/$name.1" "$tmp/man"
cp "$src/completions/bash/$name" "$tmp/bash"
cp "$src/completions/zsh/_$name" "$tmp/zsh"
cp "$src/completions/fish/$name.fish" "$tmp/fish"

"$check" "$bin" "$tmp/man" "$tmp/bash" "$tmp/zsh" "$tmp/fish" >/dev/null 2>&1 ||
  { echo "FAIL: checker rejects the real documentation of $name"; exit 1; }

expect_failure() {  # expect_failure WHAT FILE: remove --log-file from FILE, expect a complaint
  local what=$1 file=$2
  cp "$file" "$file.orig"
  sed -i -e 's/\\-\\-log\\-file//g' -e 's/--log-file//g' -e 's/-l log-file//g' "$file"
  if out=$("$check" "$bin" "$tmp/man" "$tmp/bash" "$tmp/zsh" "$tmp/fish" 2>&1); then
    echo "FAIL: checker passed although --log-file was removed from the $what"
    exit 1
  fi
  grep -q -- "--log-file" <<<"$out" ||
    { echo "FAIL: checker failed without naming --log-file: $out"; exit 1; }
  mv "$file.orig" "$file"
  echo "ok: removing --log-file from the $what is caught"
}
expect_failure "man page" "$tmp/man"
expect_failure "bash completion" "$tmp/bash"
expect_failure "zsh completion" "$tmp/zsh"
expect_failure "fish completion" "$tmp/fish"
