#!/usr/bin/env bash
# Runs one test command against a private swtpm started for it (ci/swtpm), then stops it.
# Exports WIMSE_TPM_TCTI and WIMSE_TPM_STATE (the swtpm directory, holding ekcerts/ and the
# localca certificates) for the test.
set -euo pipefail
root="${WIMSE_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
dir=$(mktemp -d /tmp/wimse-swtpm.XXXXXX)
cleanup() { "$root/ci/swtpm" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
WIMSE_TPM_TCTI=$("$root/ci/swtpm" start "$dir")
export WIMSE_TPM_TCTI WIMSE_TPM_STATE="$dir"
"$@"
