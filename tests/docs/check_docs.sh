#!/usr/bin/env bash
# Fails when a binary has an option or subcommand that its man page or one of its shell
# completions does not mention. The options and subcommands are read from the binary's own
# --help output, recursively through every subcommand, so nothing has to be listed twice.
#
#   check_docs.sh BINARY MAN_PAGE BASH_COMPLETION ZSH_COMPLETION FISH_COMPLETION
set -euo pipefail

if [ $# -ne 5 ]; then
  echo "usage: $0 BINARY MAN_PAGE BASH_COMPLETION ZSH_COMPLETION FISH_COMPLETION" >&2
  exit 2
fi
bin=$1 man=$2 bash_c=$3 zsh_c=$4 fish_c=$5
name=$(basename "$bin")
for f in "$man" "$bash_c" "$zsh_c" "$fish_c"; do
  [ -r "$f" ] || { echo "$name: missing documentation file $f" >&2; exit 1; }
done

# The man page's text with roff font escapes and \- removed, so "\fB\-\-from\fR" reads "--from".
man_text=$(sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\-/-/g' -e 's/\\&//g' "$man")

# Options (long names, or short ones that have no long name) and subcommands of one help text.
options_of() {
  awk '
    /^[A-Za-z].*:$/ { section = $0 }
    /^[ \t]*-/ && section !~ /^(Examples|Exit codes)/ {
      tok = $1
      n = split(tok, parts, ",")
      long = ""
      for (i = 1; i <= n; i++) if (parts[i] ~ /^--/) long = parts[i]
      if (long == "") long = parts[1]
      sub(/[^A-Za-z0-9-].*$/, "", long)
      print long
    }' <<<"$1" | sort -u
}
subcommands_of() {
  awk '
    /^[A-Za-z].*:$/ { in_sub = ($0 == "Subcommands:"); next }
    in_sub && /^  [^ ]/ { print $1 }
    in_sub && /^$/ { in_sub = 0 }' <<<"$1" | sort -u
}

contains_word() {  # contains_word TEXT WORD: WORD appears not glued to other name characters
  grep -qE -- "(^|[^A-Za-z0-9_-])$(sed 's/[.[\*^$]/\\&/g' <<<"$2")([^A-Za-z0-9_-]|$)" <<<"$1"
}

missing=0
report() { echo "$name: $1" >&2; missing=$((missing + 1)); }

check_path() {  # check_path SUBCOMMAND... : checks the help of "$bin SUBCOMMAND..." and recurses
  local help
  if ! help=$("$bin" "$@" --help 2>&1); then
    report "'$name $* --help' failed"
    return
  fi
  local where="${name}${*:+ $*}"
  local opt sub
  for opt in $(options_of "$help"); do
    contains_word "$man_text" "$opt" || report "option $opt of '$where' is not in $(basename "$man")"
    contains_word "$(cat "$bash_c")" "$opt" || report "option $opt of '$where' is not in bash completion $bash_c"
    contains_word "$(cat "$zsh_c")" "$opt" || report "option $opt of '$where' is not in zsh completion $zsh_c"
    if [[ $opt == --* ]]; then
      grep -qE -- "-l ['\"]?${opt#--}(['\" ]|$)" "$fish_c" ||
        report "option $opt of '$where' is not in fish completion $fish_c"
    else
      grep -qE -- "-s ['\"]?${opt#-}(['\" ]|$)" "$fish_c" ||
        report "option $opt of '$where' is not in fish completion $fish_c"
    fi
  done
  for sub in $(subcommands_of "$help"); do
    contains_word "$man_text" "$sub" || report "subcommand '$where $sub' is not in $(basename "$man")"
    for c in "$bash_c" "$zsh_c" "$fish_c"; do
      contains_word "$(cat "$c")" "$sub" || report "subcommand '$where $sub' is not in completion $c"
    done
    check_path "$@" "$sub"
  done
}

check_path
if [ "$missing" -ne 0 ]; then
  echo "$name: $missing undocumented option(s) or subcommand(s)" >&2
  exit 1
fi
echo "$name: man page and completions cover every option and subcommand"
