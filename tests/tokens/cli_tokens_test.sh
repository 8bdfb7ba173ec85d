#!/usr/bin/env bash
# tpm suite: the wimse-tpm wit/wpt commands end to end on a swtpm (run under with_swtpm.sh).
# Checks outputs and exit codes, that rejections name the reason, and that no error line ever
# contains a token.
set -euo pipefail
B="$1"
D=$(mktemp -d /tmp/wimse-cli-tokens.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
  openssl pkcs8 -topk8 -nocrypt -out "$D/issuer.pem"
openssl pkey -in "$D/issuer.pem" -pubout -out "$D/issuer.pub"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
  openssl pkcs8 -topk8 -nocrypt -out "$D/rogue.pem"
openssl pkey -in "$D/rogue.pem" -pubout -out "$D/rogue.pub"
"$B" keygen --out "$D/key.pem" >/dev/null
SUB=spiffe://example.org/ns/a/sa/client
AUD=https://svc-b.example.org/orders

"$B" wit issue --issuer-key "$D/issuer.pem" --sub "$SUB" --key "$D/key.pem" --ttl 600 \
  --kid k1 --iss https://issuer.example.org > "$D/wit"
[ "$(tr -cd '.' < "$D/wit" | wc -c)" = 2 ] || fail "WIT is not compact JWS"
out=$("$B" wit verify --wit "$D/wit" --issuer-pub "$D/issuer.pub" --trust-domain example.org)
[[ "$out" == "valid: sub=$SUB "* ]] || fail "wit verify: $out"

"$B" wpt sign --key "$D/key.pem" --wit "$D/wit" --aud "$AUD" > "$D/wpt"
out=$("$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud "$AUD" --issuer-pub "$D/issuer.pub")
[[ "$out" == "valid: sub=$SUB aud=$AUD "* ]] || fail "wpt verify: $out"

# --headers: two lines usable with curl -H @file.
"$B" wpt sign --key "$D/key.pem" --wit "$D/wit" --aud "$AUD" --headers > "$D/headers"
[ "$(wc -l < "$D/headers")" = 2 ] || fail "--headers line count"
[ "$(sed -n 1p "$D/headers")" = "Workload-Identity-Token: $(cat "$D/wit")" ] || fail "WIT header"
sed -n 2p "$D/headers" | grep -Eq '^Authorization: WPT [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
  fail "Authorization header"
sed -n 2p "$D/headers" | sed 's/^Authorization: WPT //' > "$D/wpt2"
"$B" wpt verify --wit "$D/wit" --wpt "$D/wpt2" --aud "$AUD" --issuer-pub "$D/issuer.pub" >/dev/null

# Rejections: exit 1, one stderr line with the reason, no token in it.
expect_reject() {  # reason, command...
  local reason="$1"; shift
  set +e
  "$@" >"$D/out" 2>"$D/err"
  local rc=$?
  set -e
  [ "$rc" = 1 ] || fail "expected exit 1 for '$reason', got $rc"
  [ "$(wc -l < "$D/err")" = 1 ] || fail "expected one stderr line for '$reason'"
  grep -qF "$reason" "$D/err" || fail "expected '$reason' in: $(cat "$D/err")"
  if grep -qF "$(cut -d. -f2 "$D/wit")" "$D/err" || grep -qF "$(cut -d. -f2 "$D/wpt")" "$D/err"; then
    fail "token printed in an error"
  fi
  [ ! -s "$D/out" ] || fail "stdout not empty on rejection"
}
expect_reject "aud does not match" \
  "$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud https://svc-b.example.org/other --issuer-pub "$D/issuer.pub"
expect_reject "signature does not verify" \
  "$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud "$AUD" --issuer-pub "$D/rogue.pub"
expect_reject "no trust anchor for trust domain" \
  "$B" wit verify --wit "$D/wit" --issuer-pub "$D/issuer.pub" --trust-domain other.org
expect_reject "iss not allowed" \
  "$B" wit verify --wit "$D/wit" --issuer-pub "$D/issuer.pub" --iss https://evil.example
expect_reject "WIT: expired" \
  "$B" wpt verify --wit "$D/wit" --wpt "$D/wpt" --aud "$AUD" --issuer-pub "$D/issuer.pub" --now $(( $(date +%s) + 4000 ))
# A WIT for another key: wpt sign refuses before touching the TPM.
"$B" wit issue --issuer-key "$D/issuer.pem" --sub "$SUB" --pub "$D/rogue.pub" --ttl 600 > "$D/wit-other"
expect_reject "the WIT's cnf.jwk is not this key" \
  "$B" wpt sign --key "$D/key.pem" --wit "$D/wit-other" --aud "$AUD"
# Our WPT presented with another workload's WIT: the proof does not verify under that cnf.jwk.
expect_reject "signature does not verify" \
  "$B" wpt verify --wit "$D/wit-other" --wpt "$D/wpt" --aud "$AUD" --issuer-pub "$D/issuer.pub"
expect_reject "workload identifier has a port" \
  "$B" wit issue --issuer-key "$D/issuer.pem" --sub spiffe://example.org:8443/x --pub "$D/rogue.pub"
# --headers: verify the header file a server received; a rejection prints the 401 answer.
out=$("$B" wpt verify --headers "$D/headers" --aud "$AUD" --issuer-pub "$D/issuer.pub")
[[ "$out" == "valid: sub=$SUB aud=$AUD "* ]] || fail "wpt verify --headers: $out"
set +e
"$B" wpt verify --headers "$D/headers" --aud https://svc-b.example.org/other \
  --issuer-pub "$D/issuer.pub" >"$D/out" 2>"$D/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "wpt verify --headers wrong aud: exit $rc"
[ "$(sed -n 1p "$D/out")" = "HTTP/1.1 401 Unauthorized" ] || fail "401 status line: $(cat "$D/out")"
grep -qx 'WWW-Authenticate: WPT error="invalid_token", error_description="audience: aud does not match"' \
  "$D/out" || fail "WWW-Authenticate: $(cat "$D/out")"
# s2s-protocol-07 form: Workload-Proof-Token, accepted only with --s2s07.
"$B" wpt sign --key "$D/key.pem" --wit "$D/wit" --aud "$AUD" --headers --s2s07 > "$D/legacy"
sed -n 2p "$D/legacy" | grep -Eq '^Workload-Proof-Token: [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
  fail "Workload-Proof-Token line"
out=$("$B" wpt verify --headers "$D/legacy" --s2s07 --aud "$AUD" --issuer-pub "$D/issuer.pub")
[[ "$out" == "valid: sub=$SUB "* ]] || fail "wpt verify --s2s07: $out"
set +e
"$B" wpt verify --headers "$D/legacy" --aud "$AUD" --issuer-pub "$D/issuer.pub" >"$D/out" 2>"$D/err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "Workload-Proof-Token (s2s-protocol-07) not accepted" "$D/err" ||
  fail "legacy header accepted without --s2s07"
echo "cli token tests passed"
