#!/usr/bin/env bash
# `wimse-tpm eventlog` end to end (no TPM): runs cli_eventlog_check.py with /usr/bin/python3.
# Usage: cli_eventlog_test.sh WIMSE_TPM_BINARY
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/cli_eventlog_check.py" "$1"
