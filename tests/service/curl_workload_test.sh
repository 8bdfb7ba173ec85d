#!/usr/bin/env bash
# Issue 6: curl calls the reference workload with an agent's credentials, as
# docs/agent-and-service.md documents. Three agents (--once) get credentials for
# spiffe://example.org/host-{a,b,c}/w; `wimse-tpm workload serve` runs on B's directory
# (mutual TLS + WIT/WPT, its TLS key in the TPM) with a policy that lets only host-a/w GET
# /orders*. curl (Debian's, OpenSSL 3) gets an openssl.cnf that activates default + wimsetpm,
# the agent's cert.pem and key.pem (the TSS2 key file, through the provider), bundle.pem as the
# CA, the WIT from wit.jwt and a WPT from `wimse-tpm wpt sign`: A gets 200 naming host-a/w; C,
# authenticated the same way, gets 403 with the policy's reason; A without a client
# certificate gets 401.
#   curl_workload_test.sh BUILD_DIR      (under tests/with_swtpm.sh)
source "$(dirname "$0")/lib.sh"

curl -V | head -1 | grep -q "OpenSSL/3" || fail "curl does not link OpenSSL 3"
write_policy 300 "host-*"
start_service
for l in a b c; do
  mkdir -p "$work/$l"
  "$W" agent --service "$SVC" --service-ca "$svc_dir/bundle.pem" --identity "host-$l" --label w \
    --state-dir "$work/$l/state" --cred-dir "$work/$l/creds" --once >>"$work/agent-$l.log" 2>&1 ||
    fail "agent $l"
done
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/authz.json" <<JSON
{"rules": [{"id": "spiffe://example.org/host-a/w", "methods": ["GET"], "paths": ["/orders*"]}]}
JSON
"$W" workload serve --name "workload B" --cred-dir "$work/b/creds" --listen "127.0.0.1:$port" \
  --authz "$work/authz.json" --audit "$work/b.audit.jsonl" >>"$work/workload-b.log" 2>&1 &
track "$!"
wait_for 20 grep -q listening "$work/workload-b.log" || fail "workload B did not start"

# The openssl.cnf of README "The OpenSSL provider", with the build tree's module.
cat >"$work/wimsetpm.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
alg_section = algorithm_sect
[provider_sect]
default = default_sect
wimsetpm = wimsetpm_sect
[default_sect]
activate = 1
[wimsetpm_sect]
module = $build/provider/wimsetpm.so
activate = 1
[algorithm_sect]
default_properties = ?provider=default
CNF

url="https://localhost:$port/orders/1"
# call LABEL [extra curl args]: prints "STATUS BODY" (exactly the documented command).
call() {
  local A="$work/$1/creds"; shift
  local code
  code=$(OPENSSL_CONF="$work/wimsetpm.cnf" curl -sS "$@" --cacert "$A/bundle.pem" \
    -H "Workload-Identity-Token: $(cat "$A/wit.jwt")" \
    -H "Authorization: WPT $("$W" wpt sign --key "$A/key.pem" --wit "$A/wit.jwt" --aud "$url")" \
    -o "$work/curl.body" -w '%{http_code}' "$url" 2>>"$work/curl.log") || code="curl-failed"
  echo "$code $(cat "$work/curl.body" 2>/dev/null)"
}
out=$(call a --cert "$work/a/creds/cert.pem" --key "$work/a/creds/key.pem")
case "$out" in
  "200 "*'"hello":"spiffe://example.org/host-a/w"'*) pass "curl as host-a/w: $out" ;;
  *) fail "curl as host-a/w: expected 200, got: $out (curl: $(tail -2 "$work/curl.log"))" ;;
esac
grep -q "tls_client.*host-a/w\|host-a/w.*tls_client" "$work/b.audit.jsonl" ||
  fail "workload B's audit does not name the TLS client host-a/w"
out=$(call c --cert "$work/c/creds/cert.pem" --key "$work/c/creds/key.pem")
case "$out" in
  "403 "*"host-c/w may not GET /orders/1 by policy"*) pass "curl as host-c/w: $out" ;;
  *) fail "curl as host-c/w: expected 403, got: $out" ;;
esac
out=$(call a)
case "$out" in
  "401 "*"no client certificate"*) pass "curl without a client certificate: $out" ;;
  *) fail "curl without a client certificate: expected 401, got: $out" ;;
esac
res=$("$W" audit verify --log "$work/b.audit.jsonl") || fail "workload audit: $res"
pass "workload B audit: $res"
