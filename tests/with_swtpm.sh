#!/usr/bin/env bash
# Runs one test command against a private swtpm started for it (ci/swtpm), then stops it.
# Exports WIMSE_TPM_TCTI and WIMSE_TPM_STATE (the swtpm directory, holding ekcerts/ and ca/;
# layout at the top of ci/swtpm) for the test.
#
# After the command, checks the TPM for leaked transient objects and loaded or saved sessions
# (CONVENTIONS rule 13): a leak fails the test even if the command passed. Exit status: the
# command's, or 1 for a leak or a swtpm that fails to start.
set -euo pipefail
root="${WIMSE_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
dir=$(mktemp -d "${TMPDIR:-/tmp}/wimse-swtpm.XXXXXX")
cleanup() { "$root/ci/swtpm" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
# meson test sends SIGTERM on timeout; exit through the EXIT trap so the daemon is stopped.
trap 'exit 143' TERM
trap 'exit 130' INT
WIMSE_TPM_TCTI=$("$root/ci/swtpm" start "$dir")
export WIMSE_TPM_TCTI WIMSE_TPM_STATE="$dir"

rc=0
"$@" || rc=$?

leaks=""
for cap in handles-transient handles-loaded-session handles-saved-session; do
  if ! out=$(tpm2_getcap -T "$WIMSE_TPM_TCTI" "$cap" 2>&1); then
    echo "with_swtpm: tpm2_getcap $cap failed after the test: $out" >&2
    leaks="$leaks $cap:unknown"
    continue
  fi
  handles=$(grep -o '0x[0-9A-Fa-f]\+' <<<"$out" | tr '\n' ' ' || true)
  if [ -n "$handles" ]; then
    leaks="$leaks $cap:[ ${handles}]"
  fi
done
if [ -n "$leaks" ]; then
  echo "with_swtpm: FAIL: the test left handles in the TPM:$leaks" >&2
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
