#!/usr/bin/python3
"""Searches every file written during a flow for secrets (issue 6, CONVENTIONS: never log
secrets).

    scan_secrets.py WORK_DIR [TOKEN_FILE...]

Secrets collected from WORK_DIR:
  - the private blob (TPM2B_PRIVATE) of every TSS2 key file (TPMKey ASN.1, privkey OCTET
    STRING); the flow's keys have no auth value (emptyAuth TRUE, counted in the summary), so
    no auth value exists to search for (a key with auth is reported as such);
  - the private scalar of every software PEM private key (service CA, WIT/EAR issuer);
  - the full string of every wit.jwt, and every extra token given in TOKEN_FILEs (one per
    line, e.g. WPTs asked of an agent), plus their signature segments.
Each is searched in every regular file under WORK_DIR (text and binary, e.g. state.db) as raw
bytes, lower/upper hex, base64 and base64url, and for key material of 64 bytes or more also its
first, middle and last 32 bytes raw and in hex. Files that legitimately hold a secret are
skipped for that secret only: key files for key material, wit.jwt for its own WIT, TOKEN_FILEs.
Additionally no file other than wit.jwt and TOKEN_FILEs may contain anything shaped like a
compact JWS with a WIT/WPT/EAR header (eyJ...eyJ...sig): tokens are logged as hashes only.
Prints what it checked; exits 1 naming each leak.
"""
import base64
import os
import re
import sys

from cryptography.hazmat.primitives import serialization


def der_items(buf):
    """Yields (tag, value) of the DER items directly inside `buf`."""
    i = 0
    while i < len(buf):
        tag = buf[i]
        length = buf[i + 1]
        i += 2
        if length & 0x80:
            k = length & 0x7F
            length = int.from_bytes(buf[i:i + k], "big")
            i += k
        yield tag, buf[i:i + length]
        i += length


def pem_body(text, label):
    m = re.search(f"-----BEGIN {label}-----(.*?)-----END {label}-----", text, re.S)
    return base64.b64decode("".join(m.group(1).split())) if m else None


def forms(secret, fragments):
    out = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        s = enc(secret).rstrip(b"=")
        # Base64 is position dependent: search an inner part that is aligned in all cases.
        out.add(s[4:-4] if len(s) > 16 else s)
    # Fragments of long keys (a partial dump is a leak too; token headers are shared): raw and hex of 32-byte windows.
    if fragments and len(secret) >= 64:
        for part in (secret[:32], secret[len(secret) // 2 - 16:len(secret) // 2 + 16],
                     secret[-32:]):
            out |= {part, part.hex().encode(), part.hex().upper().encode()}
    return {f for f in out if len(f) >= 16}


work = sys.argv[1]
token_files = {os.path.realpath(p) for p in sys.argv[2:]}
files = []
for d, _, names in os.walk(work):
    for name in names:
        p = os.path.join(d, name)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)

secrets = []  # (what, bytes, set of files allowed to hold it)
key_files = set()
empty_auth = 0
for p in files:
    data = open(p, "rb").read()
    text = data.decode("latin-1")
    if "-----BEGIN TSS2 PRIVATE KEY-----" in text:
        key_files.add(p)
        seq = next(der_items(pem_body(text, "TSS2 PRIVATE KEY")))[1]
        items = list(der_items(seq))
        octets = [v for t, v in items if t == 0x04]
        if any(t == 0xA0 and v == b"\x01\x01\xff" for t, v in items):
            empty_auth += 1
        else:
            print(f"note: {os.path.relpath(p, work)} has an auth value (not searched for)")
        secrets.append((f"private blob of {os.path.relpath(p, work)}", octets[-1], None))
    elif re.search(r"-----BEGIN (EC |RSA )?PRIVATE KEY-----", text):
        key_files.add(p)
        k = serialization.load_pem_private_key(data, None)
        nums = k.private_numbers()
        v = nums.private_value if hasattr(nums, "private_value") else nums.d
        secrets.append((f"private key of {os.path.relpath(p, work)}",
                        v.to_bytes((v.bit_length() + 7) // 8, "big"), None))
tokens = []
for p in files:
    if os.path.basename(p) == "wit.jwt":
        tokens.append((f"WIT of {os.path.relpath(p, work)}", open(p).read().strip(), p))
for p in token_files:
    for i, line in enumerate(open(p)):
        if line.strip():
            tokens.append((f"token {i + 1} of {os.path.basename(p)}", line.strip(), p))
for what, tok, home in tokens:
    secrets.append((what, tok.encode(), {home}))
    secrets.append((what + " (signature)", tok.rsplit(".", 1)[1].encode(), {home}))

jws = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{40,}")
leaks = []
for p in files:
    if os.path.realpath(p) in token_files:
        continue
    data = open(p, "rb").read()
    rel = os.path.relpath(p, work)
    for what, secret, homes in secrets:
        if homes is None and p in key_files:
            continue
        if homes is not None and p in homes:
            continue
        for f in forms(secret, homes is None):
            if f in data:
                leaks.append(f"{what} found in {rel}")
                break
    if os.path.basename(p) != "wit.jwt" and jws.search(data):
        leaks.append(f"a compact JWS (token) found in {rel}")

for leak in leaks:
    print("LEAK:", leak)
print(f"scanned {len(files)} files for {len(secrets)} secrets "
      f"({len(key_files)} key files, {empty_auth} TSS2 with emptyAuth, {len(tokens)} tokens) and for any compact JWS")
sys.exit(1 if leaks else 0)
