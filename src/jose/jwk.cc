#include "jose/jwk.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include <mutex>
#include <unordered_map>

#include "crypto/public_key.h"
#include "jose/base64url.h"

namespace wimse::jose {
namespace {

// An EC public key from fixed-width x and y. The point must decode and lie on the curve
// (EVP_PKEY_fromdata) and pass EVP_PKEY_public_check_quick (not the point at infinity, on the
// curve). The n*Q = O test of the full check is skipped: P-256 and P-384 have cofactor 1, so
// every on-curve point other than infinity is in the prime-order group, and that test costs a
// scalar multiplication, as much as the signature verification itself.
Result<EvpPkeyPtr> EcKeyFromJwkPoint(KeyAlg alg, ByteView x, ByteView y) {
  Bytes point;
  point.reserve(1 + x.size() + y.size());
  point.push_back(0x04);
  point.insert(point.end(), x.begin(), x.end());
  point.insert(point.end(), y.begin(), y.end());
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, CurveGroupName(alg),
                                      0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return OpenSslError("OSSL_PARAM_BLD");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", "provider=default"));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_fromdata_init");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return Error(Layer::kPolicy, "jwk EC point is not on the curve");
  }
  EvpPkeyPtr key(raw);
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), "provider=default"));
  if (!check || EVP_PKEY_public_check_quick(check.get()) != 1) {
    ERR_clear_error();
    return Error(Layer::kPolicy, "jwk EC point is not on the curve");
  }
  return key;
}

// Decoded EC public keys by (curve, x, y): building an EVP_PKEY from a point costs a good part
// of a signature verification, and a verifier sees the same cnf.jwk on every request of a
// workload for the WIT's lifetime. Only keys that passed the checks are cached; public data
// only; bounded (cleared when full). Thread-safe.
class EcKeyCache {
 public:
  EvpPkeyPtr Find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(id);
    if (it == keys_.end() || EVP_PKEY_up_ref(it->second.get()) != 1) {
      return nullptr;
    }
    return EvpPkeyPtr(it->second.get());
  }
  void Insert(const std::string& id, EVP_PKEY* key) {
    std::lock_guard<std::mutex> lock(mu_);
    if (keys_.size() >= kMaxEntries) {
      keys_.clear();
    }
    if (EVP_PKEY_up_ref(key) == 1) {
      keys_[id] = EvpPkeyPtr(key);
    }
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  std::mutex mu_;
  std::unordered_map<std::string, EvpPkeyPtr> keys_;
};

EcKeyCache& KeyCache() {
  static EcKeyCache* cache = new EcKeyCache;
  return *cache;
}

Result<EvpPkeyPtr> CachedEcKey(KeyAlg alg, ByteView x, ByteView y) {
  std::string id = (alg == KeyAlg::kEcP256 ? "P-256:" : "P-384:") + AsString(x) + AsString(y);
  if (EvpPkeyPtr hit = KeyCache().Find(id)) {
    return hit;
  }
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr key, EcKeyFromJwkPoint(alg, x, y));
  KeyCache().Insert(id, key.get());
  return key;
}

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
    WIMSE_ASSIGN_OR_RETURN(out.key, CachedEcKey(ka, x, y));
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
  if (!out.alg.empty()) {
    auto named = JwsAlgFromName(out.alg);
    if (!named.ok() || !JwsAlgAllowedForKey(out.key.get(), *named)) {
      return Error(Layer::kPolicy, "jwk alg does not match the key");
    }
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
