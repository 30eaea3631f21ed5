#!/usr/bin/env bash
# Fails when a binary has an option or subcommand that its man page or one of its shell
# completions does not mention. The options and subcommands are read from the binary's own
# --help output, recursively through every subcommand, so nothing has to be listed twice.
#
#   check_docs.sh BINARY MAN_PAGE BASH_COMPLETION ZSH_COMPLETION FISH_COMPLETION
#
# The work is one python3 process that runs the binary once per subcommand and nothing else
# (a grep or awk per name and file cost thousands of processes per binary: minutes of CI time
# on a loaded machine).
set -euo pipefail

if [ $# -ne 5 ]; then
  echo "usage: $0 BINARY MAN_PAGE BASH_COMPLETION ZSH_COMPLETION FISH_COMPLETION" >&2
  exit 2
fi
# Debian's interpreter (scripts/install-deps installs it): a version manager's python3 shim
# earlier on PATH can take seconds to start on a loaded machine.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" - "$@" <<'PY'
import os
import re
import subprocess
import sys

binary, man, bash_c, zsh_c, fish_c = sys.argv[1:6]
name = os.path.basename(binary)
for f in (man, bash_c, zsh_c, fish_c):
    if not os.access(f, os.R_OK):
        print(f"{name}: missing documentation file {f}", file=sys.stderr)
        sys.exit(1)


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# The man page's text with roff font escapes and \- removed, so "\fB\-\-from\fR" reads "--from".
man_text = read(man)
man_text = re.sub(r"\\f[BIRP]", "", man_text)
man_text = re.sub(r"\\f\(..", "", man_text)
man_text = man_text.replace("\\-", "-").replace("\\&", "")
completions = ((bash_c, read(bash_c)), (zsh_c, read(zsh_c)), (fish_c, read(fish_c)))
fish_text = completions[2][1]
SECTION = re.compile(r"^[A-Za-z].*:$")


def options_of(help_text):
    """Options (long names, or short ones that have no long name) of one help text."""
    out, section = set(), ""
    for line in help_text.split("\n"):
        if SECTION.match(line):
            section = line
        if re.match(r"^[ \t]*-", line) and not re.match(r"^(Examples|Exit codes)", section):
            parts = line.split()[0].split(",")
            longs = [p for p in parts if p.startswith("--")]
            word = longs[-1] if longs else parts[0]
            word = re.sub(r"[^A-Za-z0-9-].*$", "", word)
            if word:
                out.add(word)
    return sorted(out)


def subcommands_of(help_text):
    out, in_sub = set(), False
    for line in help_text.split("\n"):
        if SECTION.match(line):
            in_sub = line == "Subcommands:"
            continue
        if in_sub and re.match(r"^  [^ ]", line):
            out.add(line.split()[0])
        if in_sub and line == "":
            in_sub = False
    return sorted(out)


def contains_word(text, word):  # word appears, not glued to other name characters
    pattern = r"(^|[^A-Za-z0-9_-])" + re.escape(word) + r"([^A-Za-z0-9_-]|$)"
    return re.search(pattern, text, re.M) is not None


missing = 0


def report(line):
    global missing
    print(f"{name}: {line}", file=sys.stderr)
    missing += 1


def check_path(path):
    """Checks the help of `binary *path` and recurses into its subcommands."""
    run = subprocess.run([binary, *path, "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    if run.returncode != 0:
        report(f"'{' '.join([name, *path])} --help' failed")
        return
    help_text = run.stdout.decode("utf-8", "replace")
    where = " ".join([name, *path])
    for opt in options_of(help_text):
        if not contains_word(man_text, opt):
            report(f"option {opt} of '{where}' is not in {os.path.basename(man)}")
        for kind, (path_c, text) in zip(("bash", "zsh"), completions[:2]):
            if not contains_word(text, opt):
                report(f"option {opt} of '{where}' is not in {kind} completion {path_c}")
        flag, bare = ("-l", opt[2:]) if opt.startswith("--") else ("-s", opt[1:])
        if not re.search(flag + r" ['\"]?" + re.escape(bare) + r"(['\" ]|$)", fish_text, re.M):
            report(f"option {opt} of '{where}' is not in fish completion {fish_c}")
    for sub in subcommands_of(help_text):
        if not contains_word(man_text, sub):
            report(f"subcommand '{where} {sub}' is not in {os.path.basename(man)}")
        for path_c, text in completions:
            if not contains_word(text, sub):
                report(f"subcommand '{where} {sub}' is not in completion {path_c}")
        check_path([*path, sub])


check_path([])
if missing != 0:
    print(f"{name}: {missing} undocumented option(s) or subcommand(s)", file=sys.stderr)
    sys.exit(1)
print(f"{name}: man page and completions cover every option and subcommand")
PY
