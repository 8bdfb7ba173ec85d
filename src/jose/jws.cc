#include "jose/jws.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include <set>

#include "crypto/public_key.h"
#include "jose/base64url.h"

namespace wimse::jose {
namespace {

HashAlg HashFor(JwsAlg alg) { return alg == JwsAlg::kEs384 ? HashAlg::kSha384 : HashAlg::kSha256; }

// 0 < r < n and 0 < s < n for the curve of `alg` (raw is exactly 2 x field size).
Status CheckEcdsaRange(JwsAlg alg, ByteView raw) {
  int nid = alg == JwsAlg::kEs256 ? NID_X9_62_prime256v1 : NID_secp384r1;
  EcGroupPtr group(EC_GROUP_new_by_curve_name(nid));
  if (!group) {
    return OpenSslError("EC_GROUP_new_by_curve_name");
  }
  const BIGNUM* order = EC_GROUP_get0_order(group.get());
  size_t half = raw.size() / 2;
  for (size_t off : {size_t{0}, half}) {
    BignumPtr v(BN_bin2bn(raw.data() + off, static_cast<int>(half), nullptr));
    if (!v) {
      return OpenSslError("BN_bin2bn");
    }
    if (BN_is_zero(v.get()) || BN_cmp(v.get(), order) >= 0) {
      return Error(Layer::kPolicy, "ECDSA signature r or s out of range");
    }
  }
  return OkStatus();
}

Status VerifyEd25519(EVP_PKEY* key, std::string_view msg, ByteView sig) {
  if (sig.size() != 64) {
    return Error(Layer::kPolicy, "EdDSA signature has the wrong length");
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, "provider=default", key,
                                      nullptr) != 1) {
    return OpenSslError("EVP_DigestVerifyInit_ex");
  }
  int rc = EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                            reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
  ERR_clear_error();
  if (rc != 1) {
    return Error(Layer::kPolicy, "signature does not verify");
  }
  return OkStatus();
}

}  // namespace

std::string_view JwsAlgName(JwsAlg alg) {
  switch (alg) {
    case JwsAlg::kEs256:
      return "ES256";
    case JwsAlg::kEs384:
      return "ES384";
    case JwsAlg::kRs256:
      return "RS256";
    case JwsAlg::kEdDsa:
      return "EdDSA";
  }
  return "";
}

Result<JwsAlg> JwsAlgFromName(std::string_view name) {
  for (JwsAlg a : {JwsAlg::kEs256, JwsAlg::kEs384, JwsAlg::kRs256, JwsAlg::kEdDsa}) {
    if (JwsAlgName(a) == name) {
      return a;
    }
  }
  std::string shown(name.substr(0, 16));
  for (char& c : shown) {
    if (c < 0x20 || c >= 0x7f) {
      c = '?';
    }
  }
  return Error(Layer::kPolicy, "algorithm not allowed: \"" + shown + "\"");
}

Result<JwsAlg> JwsAlgForKey(EVP_PKEY* key) {
  if (key == nullptr) {
    return Error(Layer::kUsage, "no key");
  }
  if (EVP_PKEY_is_a(key, "ED25519")) {
    return JwsAlg::kEdDsa;
  }
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (EVP_PKEY_get_bits(key) < 2048) {
      return Error(Layer::kPolicy, "RSA key shorter than 2048 bits");
    }
    return JwsAlg::kRs256;
  }
  WIMSE_ASSIGN_OR_RETURN(KeyAlg ka, KeyAlgOf(key));
  switch (ka) {
    case KeyAlg::kEcP256:
      return JwsAlg::kEs256;
    case KeyAlg::kEcP384:
      return JwsAlg::kEs384;
    default:
      return Error(Layer::kPolicy, "unsupported key for JWS");
  }
}

Status CheckCrit(const Json& header) {
  auto it = header.find("crit");
  if (it == header.end()) {
    return OkStatus();
  }
  if (!it->is_array() || it->empty()) {
    return Error(Layer::kPolicy, "malformed crit: not a non-empty array");
  }
  static const std::set<std::string> kRegistered = {"alg", "jku",      "jwk", "kid", "x5u", "x5c",
                                                    "x5t", "x5t#S256", "typ", "cty", "crit"};
  std::set<std::string> seen;
  for (const Json& e : *it) {
    if (!e.is_string() || e.get_ref<const std::string&>().empty()) {
      return Error(Layer::kPolicy, "malformed crit: entry is not a non-empty string");
    }
    const std::string& name = e.get_ref<const std::string&>();
    if (!seen.insert(name).second) {
      return Error(Layer::kPolicy, "malformed crit: duplicate entry");
    }
    if (kRegistered.count(name) != 0) {
      return Error(Layer::kPolicy, "malformed crit: names a registered header parameter");
    }
    if (header.find(name) == header.end()) {
      return Error(Layer::kPolicy, "malformed crit: names a parameter absent from the header");
    }
  }
  return Error(Layer::kPolicy, "unsupported critical header parameter");
}

Result<UnverifiedJws> ParseCompactJwsUnverified(std::string_view token, const JwsLimits& limits) {
  if (token.size() > limits.max_token_bytes) {
    return Error(Layer::kParse, "token too large");
  }
  size_t d1 = token.find('.');
  size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos ||
      token.find('.', d2 + 1) != std::string_view::npos) {
    return Error(Layer::kParse, "not a compact JWS: expected exactly three segments");
  }
  std::string_view h = token.substr(0, d1);
  std::string_view p = token.substr(d1 + 1, d2 - d1 - 1);
  std::string_view s = token.substr(d2 + 1);
  if (h.empty() || p.empty() || s.empty()) {
    return Error(Layer::kParse, "not a compact JWS: empty segment");
  }
  UnverifiedJws out;
  auto header_bytes = Base64UrlDecode(h);
  if (!header_bytes.ok()) {
    return header_bytes.error().WithContext("header");
  }
  auto payload_bytes = Base64UrlDecode(p);
  if (!payload_bytes.ok()) {
    return payload_bytes.error().WithContext("payload");
  }
  auto sig_bytes = Base64UrlDecode(s);
  if (!sig_bytes.ok()) {
    return sig_bytes.error().WithContext("signature");
  }
  auto header = ParseJsonObject(AsString(*header_bytes), limits.json);
  if (!header.ok()) {
    return header.error().WithContext("header");
  }
  out.header = std::move(header).value();
  WIMSE_RETURN_IF_ERROR(CheckCrit(out.header));
  auto alg = out.header.find("alg");
  if (alg == out.header.end() || !alg->is_string()) {
    return Error(Layer::kPolicy, "header alg missing or not a string");
  }
  out.signing_input = std::string(token.substr(0, d2));
  out.payload = AsString(*payload_bytes);
  out.signature = std::move(sig_bytes).value();
  return out;
}

Status VerifyJwsSignature(EVP_PKEY* key, JwsAlg alg, std::string_view signing_input,
                          ByteView signature) {
  WIMSE_ASSIGN_OR_RETURN(JwsAlg key_alg, JwsAlgForKey(key));
  if (key_alg != alg) {
    return Error(Layer::kPolicy, "algorithm not allowed for key");
  }
  if (alg == JwsAlg::kEdDsa) {
    return VerifyEd25519(key, signing_input, signature);
  }
  if (alg == JwsAlg::kEs256 || alg == JwsAlg::kEs384) {
    size_t want = alg == JwsAlg::kEs256 ? 64 : 96;
    if (signature.size() != want) {
      return Error(Layer::kPolicy, "ECDSA signature has the wrong length");
    }
    WIMSE_RETURN_IF_ERROR(CheckEcdsaRange(alg, signature));
  } else if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(key))) {
    return Error(Layer::kPolicy, "RSA signature has the wrong length");
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(HashFor(alg), AsBytes(signing_input)));
  Status st = VerifyDigest(key, HashFor(alg), digest, signature);
  if (!st.ok()) {
    return Error(Layer::kPolicy, "signature does not verify");
  }
  return OkStatus();
}

Result<std::string> SignCompactJws(Signer& signer, Json header, std::string_view payload) {
  WIMSE_ASSIGN_OR_RETURN(JwsAlg alg, JwsAlgForKey(signer.public_key()));
  if (alg == JwsAlg::kEdDsa) {
    return Error(Layer::kUsage, "EdDSA signing is not supported through Signer");
  }
  header["alg"] = std::string(JwsAlgName(alg));
  std::string input = Base64UrlEncode(SerializeJson(header)) + "." + Base64UrlEncode(payload);
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(HashFor(alg), AsBytes(input)));
  WIMSE_ASSIGN_OR_RETURN(Bytes sig, signer.SignDigest(HashFor(alg), digest));
  size_t want = alg == JwsAlg::kEs256 ? 64
                : alg == JwsAlg::kEs384
                    ? 96
                    : static_cast<size_t>(EVP_PKEY_get_size(signer.public_key()));
  if (sig.size() != want) {
    return Error(Layer::kInternal,
                 "signer returned a signature of the wrong length " + std::to_string(sig.size()));
  }
  return input + "." + Base64UrlEncode(sig);
}

}  // namespace wimse::jose
