#!/usr/bin/env bash
# Bad input to the wimse-tpm CLI: every failure is one line on stderr that says what and where
# ("wimse-tpm: <command>: ..."), a non-zero exit, and nothing written. Runs under
# tests/with_swtpm.sh (WIMSE_TPM_TCTI names a private swtpm).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)  # helper scripts beside this one
W="$WIMSE_BUILD_ROOT/src/cli/wimse-tpm"
dir=$(mktemp -d /tmp/wimse-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
failures=0

# expect_error NAME PATTERN -- CMD...: CMD must exit non-zero with exactly one stderr line,
# starting with "wimse-tpm: " and matching PATTERN (grep -E).
expect_error() {
  local name=$1 pattern=$2
  shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  local lines
  lines=$(printf '%s' "$err" | grep -c '' || true)
  if [ "$rc" -eq 0 ]; then
    echo "FAIL $name: exit 0"; failures=$((failures + 1)); return
  fi
  if [ "$lines" -ne 1 ]; then
    echo "FAIL $name: $lines stderr lines:"; printf '%s\n' "$err"; failures=$((failures + 1)); return
  fi
  if ! printf '%s' "$err" | grep -qE "^wimse-tpm: .*$pattern"; then
    echo "FAIL $name: stderr '$err' does not match '$pattern'"; failures=$((failures + 1)); return
  fi
  echo "ok   $name: $err"
}

expect_nothing_written() {
  if [ -e "$1" ]; then echo "FAIL $2: $1 was written"; failures=$((failures + 1)); fi
}

"$W" keygen --out "$dir/key.pem" >/dev/null || { echo "FAIL keygen"; exit 1; }

expect_error "missing key file" "$dir/missing.pem" -- "$W" pubkey --key "$dir/missing.pem"
printf 'garbage\n' >"$dir/corrupt.pem"
expect_error "corrupt key file" "corrupt.pem.*no PEM block" -- "$W" pubkey --key "$dir/corrupt.pem"
head -c 200 "$dir/key.pem" >"$dir/truncated.pem"
expect_error "truncated key file" "truncated.pem" -- "$W" pubkey --key "$dir/truncated.pem"
expect_error "no TPM" 'TCTI "swtpm:host=127.0.0.1,port=1".*0x' -- \
  "$W" --tcti swtpm:host=127.0.0.1,port=1 keygen --out "$dir/nokey.pem"
expect_nothing_written "$dir/nokey.pem" "no TPM"
expect_error "wrong TCTI string" 'TCTI "nosuchtcti:x" \(no TCTI module named "nosuchtcti"' -- \
  "$W" --tcti nosuchtcti:x keygen --out "$dir/nokey2.pem"
expect_nothing_written "$dir/nokey2.pem" "wrong TCTI string"
expect_error "unwritable output" "/nonexistent-dir" -- "$W" keygen --out /nonexistent-dir/k.pem
expect_error "existing output" "exists" -- "$W" keygen --out "$dir/key.pem"
echo hello >"$dir/data"
expect_error "sign with corrupt key" "corrupt.pem" -- \
  "$W" sign --key "$dir/corrupt.pem" --in "$dir/data" --out "$dir/data.sig"
expect_nothing_written "$dir/data.sig" "sign with corrupt key"

if "$W" wpt --help >/dev/null 2>&1; then
  printf 'not.a.token\n' >"$dir/bad.jwt"
  "$W" pubkey --key "$dir/key.pem" >"$dir/pub.pem"
  out=$("$W" wpt verify --wit "$dir/bad.jwt" --wpt "$dir/bad.jwt" --aud https://b.example/ \
        --issuer-pub "$dir/pub.pem" 2>&1)
  rc=$?
  if [ "$rc" -ne 1 ] || [ "$(printf '%s' "$out" | grep -c '')" -ne 1 ]; then
    echo "FAIL malformed token: rc=$rc output: $out"; failures=$((failures + 1))
  else
    echo "ok   malformed token: $out"
  fi
fi

expect_error "missing TPM device" "/dev/wimse-no-tpm0 does not exist" -- \
  "$W" --tcti device:/dev/wimse-no-tpm0 keygen --out "$dir/nodev.pem"
expect_nothing_written "$dir/nodev.pem" "missing TPM device"
expect_error "TPM key as WIT issuer key" "is a TPM key; the issuer signs with a software key" -- \
  "$W" wit issue --issuer-key "$dir/key.pem" --sub spiffe://example.org/w --key "$dir/key.pem" \
  --ttl 60

# A TPM that answers but was never started (TPM2_Startup not sent): say so, not "does not
# answer". A swtpm with not-need-init but without startup-clear is such a TPM.
cold="$dir/cold"
mkdir -p "$cold/state"
for attempt in 1 2 3 4 5; do
  cport=$((20000 + 2 * (RANDOM % 10000)))
  if swtpm socket --tpm2 --tpmstate "dir=$cold/state" \
      --server "type=tcp,port=$cport,bindaddr=127.0.0.1" \
      --ctrl "type=tcp,port=$((cport + 1)),bindaddr=127.0.0.1" --flags not-need-init \
      --pid "file=$cold/pid" --daemon >/dev/null 2>&1; then
    break
  fi
  cport=""
done
if [ -n "$cport" ]; then
  for _ in $(seq 50); do [ -s "$cold/pid" ] && break; sleep 0.05; done
  expect_error "TPM not started" "has not been started .*tpm2_startup -c.*0x100" -- \
    "$W" --tcti "swtpm:host=127.0.0.1,port=$cport" keygen --out "$dir/cold.pem"
  expect_nothing_written "$dir/cold.pem" "TPM not started"
  kill "$(cat "$cold/pid")" 2>/dev/null || true
else
  echo "FAIL could not start a second swtpm"; failures=$((failures + 1))
fi

# Outputs are all-or-nothing and never clobber what the user had (hostile review).
lockouts() { tpm2_getcap -T "$WIMSE_TPM_TCTI" properties-variable | awk '/TPM2_PT_LOCKOUT_COUNTER/ {print $2}'; }
echo important >"$dir/keep.txt"
expect_error "blobs: existing --public without --force" "keep.txt exists \\(use --force" -- \
  "$W" blobs --key "$dir/key.pem" --public "$dir/keep.txt" --private "$dir/k.tpriv"
expect_nothing_written "$dir/k.tpriv" "blobs: existing --public"
expect_error "blobs: --private cannot be written" "/nonexistent-dir" -- \
  "$W" blobs --key "$dir/key.pem" --public "$dir/keep.txt" --private /nonexistent-dir/p --force
[ "$(cat "$dir/keep.txt")" = important ] || { echo "FAIL blobs replaced or removed keep.txt"; failures=$((failures + 1)); }
expect_error "blobs: one path for both" "are the same file" -- \
  "$W" blobs --key "$dir/key.pem" --public "$dir/same" --private "$dir/same"
expect_nothing_written "$dir/same" "blobs: one path for both"
mkdir "$dir/busy.pem.creation"
expect_error "keygen: creation record path is a directory" "busy.pem.creation is a directory" -- \
  "$W" keygen --out "$dir/busy.pem" --pubout "$dir/busy.pub"
expect_nothing_written "$dir/busy.pem" "keygen: creation record path is a directory"
expect_nothing_written "$dir/busy.pub" "keygen: creation record path is a directory"
expect_error "keygen: existing --pubout" "keep.txt exists" -- \
  "$W" keygen --out "$dir/fresh.pem" --pubout "$dir/keep.txt"
expect_nothing_written "$dir/fresh.pem" "keygen: existing --pubout"
[ "$(cat "$dir/keep.txt")" = important ] || { echo "FAIL keygen replaced keep.txt"; failures=$((failures + 1)); }

# One destination spelled two ways is one file (hostile review: the key file was replaced by
# the public key and keygen exited 0).
mkdir -p "$dir/sp"
expect_error "keygen: --pubout is --out spelled differently" "is the key file or its creation record" -- \
  "$W" keygen --out "$dir/sp/a.pem" --pubout "$dir/sp/../sp/a.pem"
expect_nothing_written "$dir/sp/a.pem" "keygen: --pubout is --out spelled differently"
expect_error "keygen: --pubout is the creation record" "is the key file or its creation record" -- \
  "$W" keygen --out "$dir/sp/b.pem" --pubout "$dir/sp/./b.pem.creation"
expect_error "blobs: one file spelled two ways" "are the same file" -- \
  "$W" blobs --key "$dir/key.pem" --public "$dir/sp/x.bin" --private "$dir/sp/../sp/x.bin"
expect_nothing_written "$dir/sp/x.bin" "blobs: one file spelled two ways"

# Outputs never replace the key file itself, not even with --force (new-user trial: blobs
# --public key.pem --force replaced the TSS2 file with its TPM2B_PUBLIC).
cp "$dir/key.pem" "$dir/keep-key.pem"
expect_error "blobs: --public is the key file" "must not be the key file" -- \
  "$W" blobs --key "$dir/keep-key.pem" --public "$dir/./keep-key.pem" --private "$dir/kk.priv" --force
expect_error "sign: --out is the key file" "is the key file or the input" -- \
  "$W" sign --key "$dir/keep-key.pem" --in "$dir/data" --out "$dir/keep-key.pem"
cmp -s "$dir/key.pem" "$dir/keep-key.pem" || { echo "FAIL the key file was changed"; failures=$((failures + 1)); }
expect_nothing_written "$dir/kk.priv" "blobs: --public is the key file"

# --tcti is accepted after the subcommand too (new-user trial).
if "$W" pubkey --key "$dir/key.pem" --tcti "$WIMSE_TPM_TCTI" >/dev/null 2>"$dir/tcti.err"; then
  echo "ok   --tcti after the subcommand"
else
  echo "FAIL --tcti after the subcommand: $(cat "$dir/tcti.err")"; failures=$((failures + 1))
fi

# A CR LF auth file is refused: OpenSSL's -passin file: would keep the CR (hostile review).
printf 'secret1\r\n' >"$dir/crlf.txt"
expect_error "CR LF auth file" "ends its line with CR LF" -- \
  "$W" keygen --out "$dir/crlf.pem" --auth-file "$dir/crlf.txt"
expect_nothing_written "$dir/crlf.pem" "CR LF auth file"

# emptyAuth FALSE (our keys with an auth value, tpm2_encodeobject's keys without one) and no
# auth option: a usage error naming --empty-auth, and no dictionary-attack strike.
printf 'pw-of-a\n' >"$dir/a.auth"
"$W" keygen --out "$dir/authkey.pem" --auth-file "$dir/a.auth" >/dev/null || { echo "FAIL keygen --auth-file"; failures=$((failures + 1)); }
before=$(lockouts)
expect_error "forgotten auth option" "has an auth value \\(emptyAuth FALSE\\).*--empty-auth.*no dictionary-attack strike" -- \
  "$W" sign --key "$dir/authkey.pem" --in "$dir/data" --out "$dir/forgot.sig"
expect_nothing_written "$dir/forgot.sig" "forgotten auth option"
[ "$(lockouts)" = "$before" ] || { echo "FAIL a forgotten auth option cost a strike ($before -> $(lockouts))"; failures=$((failures + 1)); }
expect_error "--empty-auth with --auth-file" "exclude each other" -- \
  "$W" sign --key "$dir/authkey.pem" --empty-auth --auth-file "$dir/a.auth" --in "$dir/data" --out "$dir/x.sig"
# --empty-auth is for emptyAuth FALSE files; a file without the field says "auth required".
/usr/bin/python3 "$here/strip_empty_auth.py" "$dir/authkey.pem" "$dir/noea.pem" || { echo "FAIL strip emptyAuth"; failures=$((failures + 1)); }
before=$(lockouts)
expect_error "--empty-auth on a file without emptyAuth" "has no emptyAuth field.*--empty-auth is for files with emptyAuth FALSE" -- \
  "$W" sign --key "$dir/noea.pem" --empty-auth --in "$dir/data" --out "$dir/noea.sig"
[ "$(lockouts)" = "$before" ] || { echo "FAIL --empty-auth on a file without emptyAuth cost a strike"; failures=$((failures + 1)); }
# An auth value from the environment is one line, as from a file or a prompt.
expect_error "auth env with a line break" "holds a line break" -- \
  env "NLPW=ab
cd" "$W" keygen --out "$dir/nl.pem" --auth-env NLPW
expect_nothing_written "$dir/nl.pem" "auth env with a line break"
if "$W" sign --key "$dir/authkey.pem" --auth-file "$dir/a.auth" --in "$dir/data" --out "$dir/good.sig" >/dev/null 2>&1; then
  echo "ok   sign with the auth value"
else
  echo "FAIL sign with the auth value"; failures=$((failures + 1))
fi

# No transient objects left behind by any of the above.
left=$(tpm2_getcap -T "$WIMSE_TPM_TCTI" handles-transient 2>/dev/null | grep -c 0x || true)
if [ "$left" -ne 0 ]; then echo "FAIL $left transient handles left in the TPM"; failures=$((failures + 1)); fi

[ "$failures" -eq 0 ] && echo "all CLI error cases behaved" || exit 1
