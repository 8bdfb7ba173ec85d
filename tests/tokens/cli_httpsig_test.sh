#!/usr/bin/env bash
# tpm suite: wimse-tpm httpsig sign|verify end to end on a swtpm (run under with_swtpm.sh).
# The signed header lines are sent with `curl -H @headers.txt` to a local HTTP server that
# records what it received; the recorded request is verified (exit 0), then tampered copies are
# rejected (exit 1, one stderr line with the reason). Responses are signed and verified too.
set -euo pipefail
B="$1"
D=$(mktemp -d /tmp/wimse-cli-httpsig.XXXXXX)
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
  openssl pkcs8 -topk8 -nocrypt -out "$D/issuer.pem"
openssl pkey -in "$D/issuer.pem" -pubout -out "$D/issuer.pub"
"$B" keygen --out "$D/client.pem" >/dev/null
"$B" keygen --out "$D/server.pem" >/dev/null
"$B" wit issue --issuer-key "$D/issuer.pem" --sub wimse://example.org/client --key "$D/client.pem" \
  --kid k1 > "$D/client.wit"
"$B" wit issue --issuer-key "$D/issuer.pem" --sub wimse://example.org/server --key "$D/server.pem" \
  --kid k1 > "$D/server.wit"
ANCHORS=(--issuer-pub "$D/issuer.pub" --trust-domain example.org)

# A one-shot HTTP server that records the request it gets (headers, then body).
cat > "$D/server.py" <<'PY'
import http.server, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        with open(out + '.headers', 'w') as f:
            for k, v in self.headers.items():
                f.write(f'{k}: {v}\n')
        with open(out + '.body', 'wb') as f:
            f.write(body)
        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
with open(out + '.port', 'w') as f:
    f.write(str(s.server_address[1]))
s.handle_request()
PY
/usr/bin/python3 "$D/server.py" "$D/recv" & SERVER_PID=$!
for _ in $(seq 50); do [ -s "$D/recv.port" ] && break; sleep 0.1; done
PORT=$(cat "$D/recv.port")
URL="http://127.0.0.1:$PORT/orders?dry-run=1"
AUD="http://127.0.0.1:$PORT/orders"
printf '{"item":42}' > "$D/body.json"

"$B" httpsig sign --key "$D/client.pem" --wit "$D/client.wit" --method POST --url "$URL" \
  --body "$D/body.json" --header 'Content-Type: application/json' --sign-response > "$D/headers.txt"
[ "$(wc -l < "$D/headers.txt")" = 5 ] || fail "expected 5 header lines: $(cut -c1-40 "$D/headers.txt")"
for h in Content-Type Workload-Identity-Token Content-Digest Signature-Input Signature; do
  grep -q "^$h: " "$D/headers.txt" || fail "missing $h"
done
grep -q '^Signature-Input: wimse=("@method" "@request-target" "@path" "@query" "content-type" "content-digest" "workload-identity-token");created=[0-9]*;expires=[0-9]*;nonce="[A-Za-z0-9_-]*";tag="wimse-workload-to-workload";wimse-aud="'"$AUD"'";wimse-sign-response$' \
  "$D/headers.txt" || fail "Signature-Input: $(grep Signature-Input "$D/headers.txt")"

curl -sf -o /dev/null -H @"$D/headers.txt" --data-binary @"$D/body.json" "$URL" || fail "curl"
wait "$SERVER_PID" || true
SERVER_PID=""
out=$("$B" httpsig verify --headers "$D/recv.headers" --body "$D/recv.body" --method POST \
  --url "$URL" --aud "$AUD" "${ANCHORS[@]}")
[[ "$out" == "valid: sub=wimse://example.org/client nonce="*" aud=$AUD sign-response=requested" ]] ||
  fail "verify: $out"

expect_reject() {  # reason, command...
  local reason="$1"; shift
  set +e
  "$@" >"$D/out" 2>"$D/err"
  local rc=$?
  set -e
  [ "$rc" = 1 ] || fail "expected exit 1 for '$reason', got $rc: $(cat "$D/err")"
  [ "$(wc -l < "$D/err")" = 1 ] || fail "expected one stderr line for '$reason'"
  grep -qF "$reason" "$D/err" || fail "expected '$reason' in: $(cat "$D/err")"
  if grep -qF "$(cut -d. -f2 "$D/client.wit")" "$D/err"; then fail "token in error output"; fi
}
V=("$B" httpsig verify --method POST --url "$URL" --aud "$AUD" "${ANCHORS[@]}")
printf '{"item":43}' > "$D/other.json"
expect_reject "Content-Digest does not match the body" "${V[@]}" --headers "$D/recv.headers" \
  --body "$D/other.json"
grep -v '^Content-Digest' "$D/recv.headers" > "$D/no-digest.headers"
expect_reject "body without Content-Digest" "${V[@]}" --body "$D/recv.body" \
  --headers "$D/no-digest.headers"
sed 's#^Content-Type: .*#Content-Type: text/plain#' "$D/recv.headers" > "$D/ctype.headers"
expect_reject "signature does not verify" "${V[@]}" --body "$D/recv.body" \
  --headers "$D/ctype.headers"
expect_reject "wimse-aud does not match" "$B" httpsig verify --method POST --url "$URL" \
  --aud https://elsewhere.example.org/orders "${ANCHORS[@]}" --headers "$D/recv.headers" \
  --body "$D/recv.body"
expect_reject "signature does not verify" "$B" httpsig verify --method PUT --url "$URL" \
  --aud "$AUD" "${ANCHORS[@]}" --headers "$D/recv.headers" --body "$D/recv.body"
expect_reject "signature expired" "${V[@]}" --headers "$D/recv.headers" --body "$D/recv.body" \
  --now $(( $(date +%s) + 3600 ))
expect_reject "WIT: " "$B" httpsig verify --method POST --url "$URL" --aud "$AUD" \
  --issuer-pub "$D/issuer.pub" --trust-domain other.org --headers "$D/recv.headers" \
  --body "$D/recv.body"

# The server signs its response with its own TPM key; the client verifies it.
printf 'accepted\n' > "$D/resp.txt"
"$B" httpsig sign --response --status 201 --key "$D/server.pem" --wit "$D/server.wit" \
  --method POST --url "$URL" --request-headers "$D/headers.txt" --body "$D/resp.txt" \
  --header 'Content-Type: text/plain' > "$D/resp-headers.txt"
grep -q 'wimse-req-nonce="' "$D/resp-headers.txt" || fail "no wimse-req-nonce"
{ echo "HTTP/1.1 201 Created"; cat "$D/resp-headers.txt"; } > "$D/resp-dump.txt"
out=$("$B" httpsig verify --response --headers "$D/resp-dump.txt" --body "$D/resp.txt" \
  --method POST --url "$URL" --request-headers "$D/headers.txt" "${ANCHORS[@]}")
[[ "$out" == "valid: sub=wimse://example.org/server "* ]] || fail "response verify: $out"
expect_reject "signature does not verify" "$B" httpsig verify --response --status 200 \
  --headers "$D/resp-headers.txt" --body "$D/resp.txt" --method POST --url "$URL" \
  --request-headers "$D/headers.txt" "${ANCHORS[@]}"
# A response to another request (different nonce) is rejected.
"$B" httpsig sign --key "$D/client.pem" --wit "$D/client.wit" --method POST --url "$URL" \
  --body "$D/body.json" > "$D/headers2.txt"
expect_reject "wimse-req-nonce does not match the request nonce" "$B" httpsig verify --response \
  --headers "$D/resp-dump.txt" --body "$D/resp.txt" --method POST --url "$URL" \
  --request-headers "$D/headers2.txt" "${ANCHORS[@]}"
# Signing with a key the WIT does not bind is refused.
expect_reject "the WIT's cnf.jwk is not this key" "$B" httpsig sign --key "$D/server.pem" \
  --wit "$D/client.wit" --method GET --url "$URL"
echo "cli httpsig: ok"
