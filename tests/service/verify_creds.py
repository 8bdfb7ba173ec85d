#!/usr/bin/python3
"""Verifies agent credential directories with tools independent of wimse-tpm.

    verify_creds.py CRED_DIR...

For each directory: cert.pem (leaf) must verify against bundle.pem with `openssl verify`
(purpose any), carry exactly one URI SAN equal to identity.json's identifier and the serial
identity.json names; wit.jwt must verify (jwcrypto) against a key of jwks.json, be unexpired,
name the identifier as sub, and its cnf.jwk must be the certificate's public key (RFC 7638
thumbprints compared). Prints one JSON line per directory (identifier, serial, jti, key
thumbprint, WIT sha256: no token) and exits 1 on the first failure.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk, jwt


def fail(d, msg):
    print(f"verify_creds: {d}: {msg}", file=sys.stderr)
    sys.exit(1)


def check(d):
    r = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "bundle.pem"),
                        os.path.join(d, "cert.pem")], capture_output=True, text=True)
    if r.returncode != 0:
        fail(d, "openssl verify: " + (r.stdout + r.stderr).strip())
    ident = json.load(open(os.path.join(d, "identity.json")))
    cert = x509.load_pem_x509_certificate(open(os.path.join(d, "cert.pem"), "rb").read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [ident["identifier"]]:
        fail(d, f"URI SANs {uris} != [{ident['identifier']}]")
    if int(ident["serial"], 16) != cert.serial_number:
        fail(d, f"identity.json serial {ident['serial']} is not the certificate's")
    spki = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    cert_thumb = jwk.JWK.from_pem(spki).thumbprint()

    jwks = jwk.JWKSet.from_json(open(os.path.join(d, "jwks.json")).read())
    wit = open(os.path.join(d, "wit.jwt")).read().strip()
    try:
        tok = jwt.JWT(jwt=wit, key=jwks, check_claims={"exp": None})
    except Exception as e:  # noqa: BLE001 - any verification failure fails the test
        fail(d, f"WIT does not verify against jwks.json: {e}")
    claims = json.loads(tok.claims)
    if claims.get("sub") != ident["identifier"]:
        fail(d, f"WIT sub {claims.get('sub')} != {ident['identifier']}")
    if claims["exp"] <= time.time():
        fail(d, "WIT expired")
    cnf_thumb = jwk.JWK(**claims["cnf"]["jwk"]).thumbprint()
    if cnf_thumb != cert_thumb:
        fail(d, "WIT cnf.jwk is not the certificate's key")
    if not claims.get("jti"):
        fail(d, "WIT has no jti")
    print(json.dumps({"dir": d, "identifier": ident["identifier"],
                      "serial": format(cert.serial_number, "x"), "jti": claims["jti"],
                      "key": cert_thumb,
                      "wit_sha256": hashlib.sha256(wit.encode()).hexdigest()}))


for d in sys.argv[1:]:
    check(d)
