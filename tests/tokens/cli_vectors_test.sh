#!/usr/bin/env bash
# unit suite (no TPM): `wimse-tpm wit verify` and `wpt verify` accept the recorded vectors in
# tests/data/tokens with their own clock, audience and issuer JWKS, and reject them one hour
# later. Verification never touches a TPM.
set -euo pipefail
B="$1"
ROOT="${WIMSE_SOURCE_ROOT:?}"
D=$(mktemp -d /tmp/wimse-cli-vectors.XXXXXX)
trap 'rm -rf "$D"' EXIT
for v in v1-draft-wit-wpt v2-wpt02-wit-wpt es256-jwcrypto; do
  /usr/bin/python3 - "$ROOT/tests/data/tokens/$v.json" "$D" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
d = sys.argv[2]
for name in ("wit", "wpt"):
    open(d + "/" + name, "w").write(v[name] + "\n")
open(d + "/jwks", "w").write(json.dumps(v["issuer_jwks"]))
open(d + "/params", "w").write("%s %s %d %s\n" % (v["trust_domain"], v["aud"], v["now"], v["expected_sub"]))
PY
  read -r td aud now sub < "$D/params"
  out=$(WIMSE_TPM_TCTI=none "$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud "$aud" \
        --jwks "$D/jwks" --trust-domain "$td" --now "$now")
  [[ "$out" == "valid: sub=$sub aud=$aud "* ]] || { echo "FAIL $v: $out" >&2; exit 1; }
  "$B" wit verify --wit "$D/wit" --jwks "$D/jwks" --trust-domain "$td" --now "$now" >/dev/null
  if "$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud "$aud" --jwks "$D/jwks" \
       --trust-domain "$td" --now $((now + 3600)) 2>"$D/err"; then
    echo "FAIL $v: accepted an hour later" >&2; exit 1
  fi
  grep -q "rejected: WIT: expired\|rejected: expired" "$D/err" || { cat "$D/err" >&2; exit 1; }
  echo "$v: ok"
done
