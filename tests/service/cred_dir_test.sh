#!/usr/bin/env bash
# Issue 6: the credential directory switches as a whole. A running agent renews about every
# 0.3 s (3 s credentials, --renew-fraction 0.1) while a reader (Python, independent of our code)
# reads the set the way docs/agent-and-service.md tells readers to: resolve `current` once, then
# read cert.pem, wit.jwt and identity.json from that version directory. Every set read must be
# one renewal's: identity.json's serial is the certificate's, its wit_sha256 is the WIT's, and
# the WIT's cnf.jwk is the certificate's key (RFC 7638 thumbprints). The agent must have switched
# at least 20 times during the reads, the top-level names must be symlinks through `current`
# (and resolve to the newest set), and at most 3 versions may be left on disk.
#   cred_dir_test.sh BUILD_DIR      (under tests/with_swtpm.sh)
source "$(dirname "$0")/lib.sh"

write_policy 3 "host-*"
start_service
mkdir -p "$work/a"
creds="$work/a/creds"
"$W" agent --service "$SVC" --service-ca "$svc_dir/bundle.pem" --identity host-r --label w \
  --state-dir "$work/a/state" --cred-dir "$creds" --renew-fraction 0.1 >>"$work/agent.log" 2>&1 &
agent_pid=$!
track "$agent_pid"
wait_for 60 test -s "$creds/identity.json" || fail "no first credentials"

$PY - "$creds" <<'PY' || fail "a reader saw a mixed credential set"
import base64, hashlib, json, os, sys, time
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk

d = sys.argv[1]
def b64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
seen, sets, deadline = set(), 0, time.time() + 60
while len(seen) < 25 and time.time() < deadline:
    v = os.path.join(d, os.readlink(os.path.join(d, "current")))
    cert_pem = open(os.path.join(v, "cert.pem"), "rb").read()
    wit = open(os.path.join(v, "wit.jwt")).read().strip()
    ident = json.load(open(os.path.join(v, "identity.json")))
    cert = x509.load_pem_x509_certificate(cert_pem)
    if int(ident["serial"], 16) != cert.serial_number:
        sys.exit(f"{v}: identity.json serial {ident['serial']} is not cert.pem's")
    if ident["wit_sha256"] != hashlib.sha256(wit.encode()).hexdigest():
        sys.exit(f"{v}: wit.jwt is not the WIT of this renewal")
    spki = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = json.loads(b64(wit.split(".")[1]))
    if jwk.JWK(**claims["cnf"]["jwk"]).thumbprint() != jwk.JWK.from_pem(spki).thumbprint():
        sys.exit(f"{v}: WIT cnf is not the certificate key")
    seen.add(ident["version"])
    sets += 1
if len(seen) < 20:
    sys.exit(f"only {len(seen)} renewals observed in 60 s ({sets} sets read)")
print(f"{sets} sets read across {len(seen)} renewals, every one consistent")
PY
pass "reader saw only consistent sets"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null

for f in wit.jwt cert.pem bundle.pem jwks.json key.pem identity.json; do
  [ "$(readlink "$creds/$f")" = "current/$f" ] || fail "$f is not a symlink through current"
done
n=$(ls "$creds/versions" | wc -l)
[ "$n" -le 3 ] || fail "$n versions left on disk (expected at most 3)"
[ "$(stat -c %a "$creds/current/key.pem")" = 600 ] || fail "key.pem is not mode 0600"
$PY "$VERIFY" "$creds" >/dev/null || fail "the top-level names do not verify (agent stopped)"
pass "top-level names are symlinks through current and verify; $n versions on disk"
