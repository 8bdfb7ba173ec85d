#!/usr/bin/python3
"""Independent check of a WIT + WPT pair with python3-jwcrypto (Debian 12).

Usage: verify_with_jwcrypto.py DIR
DIR holds: wit, wpt (compact tokens), issuer.jwk (public JWK), params.json
({"aud": ..., "now": ..., "thumbprint": <our RFC 7638 thumbprint of cnf.jwk>}).
Exit 0 and "ok" when both tokens verify under the WIMSE rules checked here; exit 1 with the
first failing rule on stderr otherwise. Never prints a token.
"""
import base64
import hashlib
import json
import os
import sys

from jwcrypto import jwk, jws


def fail(msg):
    print("jwcrypto: " + msg, file=sys.stderr)
    sys.exit(1)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verified_claims(token, key, alg, typ):
    t = jws.JWS()
    try:
        t.deserialize(token)
        t.verify(key, alg=alg)
    except Exception as e:  # jwcrypto raises on any verification failure
        fail("%s signature: %s" % (typ, type(e).__name__))
    header = t.jose_header
    if header.get("alg") != alg:
        fail("%s alg %r" % (typ, header.get("alg")))
    if header.get("typ") != typ:
        fail("%s typ %r" % (typ, header.get("typ")))
    return json.loads(t.payload)


def main():
    d = sys.argv[1]
    read = lambda name: open(os.path.join(d, name)).read().strip()
    params = json.loads(read("params.json"))
    issuer = jwk.JWK(**json.loads(read("issuer.jwk")))
    wit, wpt = read("wit"), read("wpt")
    now = params["now"]

    wit_claims = verified_claims(wit, issuer, "ES256", "wit+jwt")
    if not (wit_claims["exp"] > now):
        fail("WIT expired")
    cnf = wit_claims["cnf"]["jwk"]
    if "d" in cnf:
        fail("cnf.jwk has d")
    if cnf.get("alg") != "ES256" or len(cnf["x"]) != 43 or len(cnf["y"]) != 43:
        fail("cnf.jwk shape")
    workload = jwk.JWK(**cnf)
    if workload.thumbprint() != params["thumbprint"]:
        fail("thumbprint differs: %s" % workload.thumbprint())

    wpt_claims = verified_claims(wpt, workload, cnf["alg"], "wpt+jwt")
    if wpt_claims["aud"] != params["aud"]:
        fail("aud")
    if not (now < wpt_claims["exp"] <= now + 300):
        fail("WPT exp")
    if wpt_claims["wth"] != b64(hashlib.sha256(wit.encode("ascii")).digest()):
        fail("wth")
    if len(base64.urlsafe_b64decode(wpt_claims["jti"] + "==")) != 16:
        fail("jti is not 128 bits")
    sig = base64.urlsafe_b64decode(wpt.split(".")[2] + "==")
    if len(sig) != 64:
        fail("WPT signature length %d" % len(sig))
    print("ok")


main()
