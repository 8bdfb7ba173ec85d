#!/usr/bin/env bash
# Checks that every C++ source of the project is formatted as .clang-format says
# (CONVENTIONS: "a .clang-format in the repo, checked in CI"). Prints each file that differs
# and how to fix it; exits 1 if any does. The reference formatter is Debian 12's clang-format
# (14), which ci/setup installs; other versions may format a few constructs differently.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v clang-format >/dev/null 2>&1; then
  echo "format_check: clang-format is not installed (ci/setup installs it)" >&2
  exit 1
fi
mapfile -d '' files < <(find attest bench provider src tests \
  \( -name node_modules -o -name 'build*' \) -prune -o \
  \( -name '*.cc' -o -name '*.h' -o -name '*.cpp' \) -type f -print0 | sort -z)
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "format_check: $f is not clang-format clean (run: clang-format -i $f)"
    bad=$((bad + 1))
  fi
done
echo "format_check: ${#files[@]} files checked, $bad not formatted ($(clang-format --version))"
[ "$bad" -eq 0 ]
