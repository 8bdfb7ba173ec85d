#!/usr/bin/env bash
# The whole flow (ci/demo-flow: service, agents a/b/c, workload B, allowed and denied calls,
# renewal, audit verification) in a kept working directory, then the full secret scan of every
# file it wrote (scan_secrets.py: private blobs of all TSS2 key files, the service's software
# private keys, every WIT in full and by signature, and any compact JWS such as a WPT or an EAR
# outside wit.jwt).
#   flow_test.sh BUILD_DIR      (under tests/with_swtpm.sh)
source "$(dirname "$0")/lib.sh"

WIMSE_DEMO_DIR="$work/flow" "$root/ci/demo-flow" "$build" || fail "ci/demo-flow failed"
$PY "$root/tests/service/scan_secrets.py" "$work/flow" || fail "secrets found in the flow's files"
pass "no secret in any file the flow wrote"
