#include "jose/jwk.h"

#include <openssl/core_names.h>

#include "crypto/public_key.h"
#include "jose/base64url.h"

namespace wimse::jose {
namespace {

Result<std::string> RequiredString(const Json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) {
    return Error(Layer::kParse, std::string("jwk ") + name + " missing or not a string");
  }
  return it->get<std::string>();
}

Result<Bytes> FixedB64(const Json& jwk, const char* name, size_t len) {
  WIMSE_ASSIGN_OR_RETURN(std::string s, RequiredString(jwk, name));
  auto b = Base64UrlDecode(s);
  if (!b.ok()) {
    return b.error().WithContext(std::string("jwk ") + name);
  }
  if (len != 0 && b->size() != len) {
    return Error(Layer::kParse, std::string("jwk ") + name + " has the wrong length");
  }
  return std::move(b).value();
}

Result<Bytes> BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
    return OpenSslError(std::string("EVP_PKEY_get_bn_param ") + name);
  }
  BignumPtr bn(raw);
  Bytes out(static_cast<size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), out.data());
  return out;
}

}  // namespace

Result<PublicJwk> ParsePublicJwk(const Json& jwk) {
  if (!jwk.is_object()) {
    return Error(Layer::kParse, "jwk is not an object");
  }
  for (const char* priv : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}) {
    if (jwk.contains(priv)) {
      return Error(Layer::kPolicy, std::string("jwk contains private member \"") + priv + "\"");
    }
  }
  PublicJwk out;
  WIMSE_ASSIGN_OR_RETURN(out.kty, RequiredString(jwk, "kty"));
  WIMSE_ASSIGN_OR_RETURN(auto alg, OptionalStringMember(jwk, "alg"));
  WIMSE_ASSIGN_OR_RETURN(auto kid, OptionalStringMember(jwk, "kid"));
  WIMSE_ASSIGN_OR_RETURN(auto use, OptionalStringMember(jwk, "use"));
  out.alg = alg.value_or("");
  out.kid = kid.value_or("");
  out.use = use.value_or("");
  if (out.kty == "oct") {
    return Error(Layer::kPolicy, "jwk kty oct not allowed");
  }
  if (out.kty == "EC") {
    WIMSE_ASSIGN_OR_RETURN(std::string crv, RequiredString(jwk, "crv"));
    KeyAlg ka;
    if (crv == "P-256") {
      ka = KeyAlg::kEcP256;
    } else if (crv == "P-384") {
      ka = KeyAlg::kEcP384;
    } else {
      return Error(Layer::kPolicy, "unsupported jwk crv");
    }
    size_t fs = CurveFieldSize(ka);
    WIMSE_ASSIGN_OR_RETURN(Bytes x, FixedB64(jwk, "x", fs));
    WIMSE_ASSIGN_OR_RETURN(Bytes y, FixedB64(jwk, "y", fs));
    auto key = EcPublicKeyFromXY(ka, x, y);
    if (!key.ok()) {
      return Error(Layer::kPolicy, "jwk EC point is not on the curve");
    }
    out.key = std::move(key).value();
  } else if (out.kty == "OKP") {
    WIMSE_ASSIGN_OR_RETURN(std::string crv, RequiredString(jwk, "crv"));
    if (crv != "Ed25519") {
      return Error(Layer::kPolicy, "unsupported jwk crv");
    }
    WIMSE_ASSIGN_OR_RETURN(Bytes x, FixedB64(jwk, "x", 32));
    out.key.reset(
        EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", "provider=default", x.data(), x.size()));
    if (!out.key) {
      return OpenSslError("Ed25519 public key");
    }
  } else if (out.kty == "RSA") {
    WIMSE_ASSIGN_OR_RETURN(Bytes n, FixedB64(jwk, "n", 0));
    WIMSE_ASSIGN_OR_RETURN(Bytes e, FixedB64(jwk, "e", 0));
    if (n.empty() || n[0] == 0 || e.empty() || e[0] == 0 || e.size() > 4) {
      return Error(Layer::kParse, "jwk RSA n or e is not minimal");
    }
    uint32_t ev = 0;
    for (uint8_t b : e) {
      ev = (ev << 8) | b;
    }
    WIMSE_ASSIGN_OR_RETURN(out.key, RsaPublicKeyFromNE(n, ev));
  } else {
    return Error(Layer::kPolicy, "unsupported jwk kty");
  }
  auto key_alg = JwsAlgForKey(out.key.get());
  if (!key_alg.ok()) {
    return key_alg.error();
  }
  if (!out.alg.empty() && out.alg != JwsAlgName(*key_alg)) {
    return Error(Layer::kPolicy, "jwk alg does not match the key");
  }
  return out;
}

Result<Json> PublicKeyToJwk(EVP_PKEY* key, std::string_view alg) {
  Json jwk = Json::object();
  if (EVP_PKEY_is_a(key, "EC")) {
    WIMSE_ASSIGN_OR_RETURN(KeyAlg ka, KeyAlgOf(key));
    WIMSE_ASSIGN_OR_RETURN(Bytes point, EcPublicPoint(key));
    size_t fs = CurveFieldSize(ka);
    if (point.size() != 1 + 2 * fs) {
      return Error(Layer::kInternal, "EC point has the wrong size");
    }
    jwk["kty"] = "EC";
    jwk["crv"] = ka == KeyAlg::kEcP256 ? "P-256" : "P-384";
    jwk["x"] = Base64UrlEncode(ByteView(point).subspan(1, fs));
    jwk["y"] = Base64UrlEncode(ByteView(point).subspan(1 + fs, fs));
  } else if (EVP_PKEY_is_a(key, "RSA")) {
    WIMSE_ASSIGN_OR_RETURN(Bytes n, BnParam(key, OSSL_PKEY_PARAM_RSA_N));
    WIMSE_ASSIGN_OR_RETURN(Bytes e, BnParam(key, OSSL_PKEY_PARAM_RSA_E));
    jwk["kty"] = "RSA";
    jwk["n"] = Base64UrlEncode(n);
    jwk["e"] = Base64UrlEncode(e);
  } else if (EVP_PKEY_is_a(key, "ED25519")) {
    Bytes x(32);
    size_t len = x.size();
    if (EVP_PKEY_get_raw_public_key(key, x.data(), &len) != 1 || len != 32) {
      return OpenSslError("EVP_PKEY_get_raw_public_key");
    }
    jwk["kty"] = "OKP";
    jwk["crv"] = "Ed25519";
    jwk["x"] = Base64UrlEncode(x);
  } else {
    return Error(Layer::kPolicy, "unsupported key type for JWK");
  }
  if (!alg.empty()) {
    jwk["alg"] = std::string(alg);
  }
  return jwk;
}

Result<std::string> JwkThumbprint(const Json& jwk) {
  WIMSE_ASSIGN_OR_RETURN(std::string kty, RequiredString(jwk, "kty"));
  std::vector<const char*> members;
  if (kty == "EC") {
    members = {"crv", "kty", "x", "y"};
  } else if (kty == "RSA") {
    members = {"e", "kty", "n"};
  } else if (kty == "OKP") {
    members = {"crv", "kty", "x"};
  } else {
    return Error(Layer::kPolicy, "unsupported jwk kty");
  }
  // Built by hand so the member order is the RFC's (lexicographic) regardless of the container.
  std::string canonical = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    WIMSE_ASSIGN_OR_RETURN(std::string v, RequiredString(jwk, members[i]));
    if (i > 0) {
      canonical += ",";
    }
    canonical += SerializeJson(Json(members[i])) + ":" + SerializeJson(Json(v));
  }
  canonical += "}";
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(HashAlg::kSha256, AsBytes(canonical)));
  return Base64UrlEncode(digest);
}

}  // namespace wimse::jose
