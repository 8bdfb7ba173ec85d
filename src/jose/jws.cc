#include "jose/jws.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "crypto/public_key.h"
#include "jose/base64url.h"

namespace wimse::jose {
namespace {

HashAlg HashFor(JwsAlg alg) { return alg == JwsAlg::kEs384 ? HashAlg::kSha384 : HashAlg::kSha256; }

bool IsRsaAlg(JwsAlg alg) { return alg == JwsAlg::kRs256 || alg == JwsAlg::kPs256; }

// Group orders n (big-endian), SEC 2 / FIPS 186-4.
constexpr uint8_t kP256Order[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
constexpr uint8_t kP384Order[48] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73};

// 0 < r < n and 0 < s < n for the curve of `alg` (raw is exactly 2 x field size), compared as
// fixed-width big-endian integers.
Status CheckEcdsaRange(JwsAlg alg, ByteView raw) {
  const uint8_t* order = alg == JwsAlg::kEs256 ? kP256Order : kP384Order;
  size_t half = raw.size() / 2;
  for (size_t off : {size_t{0}, half}) {
    const uint8_t* v = raw.data() + off;
    bool zero = std::all_of(v, v + half, [](uint8_t b) { return b == 0; });
    if (zero || std::memcmp(v, order, half) >= 0) {
      return Error(Layer::kPolicy, "ECDSA signature r or s out of range");
    }
  }
  return OkStatus();
}

// A fetched digest, kept for the life of the process (EVP_MD_fetch per call costs more than
// hashing a token).
const EVP_MD* FetchedMd(HashAlg hash) {
  static const EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", "provider=default");
  static const EVP_MD* sha384 = EVP_MD_fetch(nullptr, "SHA384", "provider=default");
  return hash == HashAlg::kSha384 ? sha384 : sha256;
}

// DER ECDSA-Sig-Value for a range-checked raw r||s (each half < 2^(8*half)): SEQUENCE of two
// minimal positive INTEGERs. Field sizes here (32, 48) keep every length below 128.
Bytes RawToDer(ByteView raw) {
  size_t half = raw.size() / 2;
  Bytes ints;
  for (size_t off : {size_t{0}, half}) {
    size_t i = 0;
    while (i + 1 < half && raw[off + i] == 0) {
      ++i;
    }
    bool pad = (raw[off + i] & 0x80) != 0;
    ints.push_back(0x02);
    ints.push_back(static_cast<uint8_t>(half - i + (pad ? 1 : 0)));
    if (pad) {
      ints.push_back(0);
    }
    ints.insert(ints.end(), raw.begin() + static_cast<long>(off + i),
                raw.begin() + static_cast<long>(off + half));
  }
  Bytes der = {0x30, static_cast<uint8_t>(ints.size())};
  der.insert(der.end(), ints.begin(), ints.end());
  return der;
}

// Verification contexts of recently used keys, per thread (an EVP_PKEY_CTX is not safe to share
// between threads, and creating and initialising one costs several percent of an ECDSA verify).
// Each entry holds a reference on its key, so a cached pointer can never name a different,
// later key. Small and bounded: a verifier uses a handful of issuer keys and, per request, one
// workload key.
struct CachedCtx {
  EvpPkeyPtr key;
  JwsAlg alg;
  EvpPkeyCtxPtr ctx;
};

std::vector<CachedCtx>& CtxCache() {
  thread_local std::vector<CachedCtx> cache;
  return cache;
}

// The cached context for (key, alg), or nullptr. A hit means `alg` was already checked against
// the key (entries are only added after that check).
EVP_PKEY_CTX* FindCachedCtx(EVP_PKEY* key, JwsAlg alg) {
  std::vector<CachedCtx>& cache = CtxCache();
  for (size_t i = 0; i < cache.size(); ++i) {
    if (cache[i].key.get() == key && cache[i].alg == alg) {
      if (i != 0) {
        std::swap(cache[i], cache[0]);  // most recently used first
      }
      return cache[0].ctx.get();
    }
  }
  return nullptr;
}

Result<EVP_PKEY_CTX*> VerifyCtxFor(EVP_PKEY* key, JwsAlg alg, const EVP_MD* md) {
  constexpr size_t kMaxCached = 8;
  if (EVP_PKEY_CTX* hit = FindCachedCtx(key, alg)) {
    return hit;
  }
  std::vector<CachedCtx>& cache = CtxCache();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, "provider=default"));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
    return OpenSslError("EVP_PKEY_verify_init");
  }
  if (alg == JwsAlg::kRs256 && EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return OpenSslError("EVP_PKEY_CTX_set_rsa_padding");
  }
  if (alg == JwsAlg::kPs256 &&
      (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return OpenSslError("EVP_PKEY_CTX_set_rsa_padding (PSS)");
  }
  if (EVP_PKEY_up_ref(key) != 1) {
    return OpenSslError("EVP_PKEY_up_ref");
  }
  if (cache.size() >= kMaxCached) {
    cache.pop_back();
  }
  cache.insert(cache.begin(), CachedCtx{EvpPkeyPtr(key), alg, std::move(ctx)});
  return cache[0].ctx.get();
}

// ECDSA or RSASSA-PKCS1-v1_5 verification of `msg` hashed with `hash`, with EVP directly (the
// algorithm and key type are already known to match).
Status VerifyWithEvp(EVP_PKEY* key, JwsAlg alg, std::string_view msg, ByteView sig) {
  HashAlg hash = HashFor(alg);
  const EVP_MD* md = FetchedMd(hash);
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (md == nullptr || EVP_Digest(msg.data(), msg.size(), digest, &digest_len, md, nullptr) != 1) {
    return OpenSslError("EVP_Digest");
  }
  Bytes der;
  ByteView to_verify = sig;
  if (alg == JwsAlg::kEs256 || alg == JwsAlg::kEs384) {
    der = RawToDer(sig);
    to_verify = der;
  }
  WIMSE_ASSIGN_OR_RETURN(EVP_PKEY_CTX * ctx, VerifyCtxFor(key, alg, md));
  int rc = EVP_PKEY_verify(ctx, to_verify.data(), to_verify.size(), digest, digest_len);
  ERR_clear_error();
  if (rc != 1) {
    return Error(Layer::kPolicy, "signature does not verify");
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
    case JwsAlg::kPs256:
      return "PS256";
    case JwsAlg::kEdDsa:
      return "EdDSA";
  }
  return "";
}

Result<JwsAlg> JwsAlgFromName(std::string_view name) {
  for (JwsAlg a :
       {JwsAlg::kEs256, JwsAlg::kEs384, JwsAlg::kRs256, JwsAlg::kPs256, JwsAlg::kEdDsa}) {
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

bool JwsAlgAllowedForKey(EVP_PKEY* key, JwsAlg alg) {
  auto own = JwsAlgForKey(key);
  if (!own.ok()) {
    return false;
  }
  return *own == alg || (*own == JwsAlg::kRs256 && alg == JwsAlg::kPs256);
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
  if (key == nullptr) {
    return Error(Layer::kUsage, "no key");
  }
  // A cached verification context means this (key, alg) pair was checked before.
  if ((alg == JwsAlg::kEdDsa || FindCachedCtx(key, alg) == nullptr) &&
      !JwsAlgAllowedForKey(key, alg)) {
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
  } else if (IsRsaAlg(alg) && signature.size() != static_cast<size_t>(EVP_PKEY_get_size(key))) {
    return Error(Layer::kPolicy, "RSA signature has the wrong length");
  }
  return VerifyWithEvp(key, alg, signing_input, signature);
}

Result<Bytes> SignWithJwsAlg(Signer& signer, JwsAlg alg, std::string_view input) {
  EVP_PKEY* pub = signer.public_key();
  if (alg == JwsAlg::kEdDsa) {
    return Error(Layer::kUsage, "EdDSA signing is not supported through Signer");
  }
  if (!JwsAlgAllowedForKey(pub, alg)) {
    return Error(Layer::kUsage,
                 "algorithm " + std::string(JwsAlgName(alg)) + " not allowed for the signer's key");
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(HashFor(alg), AsBytes(input)));
  Bytes sig;
  if (alg == JwsAlg::kPs256) {
    auto* pss = dynamic_cast<RsaPssSigner*>(&signer);
    if (pss == nullptr) {
      return Error(Layer::kUsage, "this signer cannot produce RSASSA-PSS (PS256) signatures");
    }
    WIMSE_ASSIGN_OR_RETURN(sig, pss->SignDigestPss(HashFor(alg), digest));
  } else {
    WIMSE_ASSIGN_OR_RETURN(sig, signer.SignDigest(HashFor(alg), digest));
  }
  size_t want = alg == JwsAlg::kEs256   ? 64
                : alg == JwsAlg::kEs384 ? 96
                                        : static_cast<size_t>(EVP_PKEY_get_size(pub));
  if (sig.size() != want) {
    return Error(Layer::kInternal,
                 "signer returned a signature of the wrong length " + std::to_string(sig.size()));
  }
  return sig;
}

Result<std::string> SignCompactJws(Signer& signer, JwsAlg alg, Json header,
                                   std::string_view payload) {
  header["alg"] = std::string(JwsAlgName(alg));
  std::string input = Base64UrlEncode(SerializeJson(header)) + "." + Base64UrlEncode(payload);
  WIMSE_ASSIGN_OR_RETURN(Bytes sig, SignWithJwsAlg(signer, alg, input));
  return input + "." + Base64UrlEncode(sig);
}

Result<std::string> SignCompactJws(Signer& signer, Json header, std::string_view payload) {
  WIMSE_ASSIGN_OR_RETURN(JwsAlg alg, JwsAlgForKey(signer.public_key()));
  return SignCompactJws(signer, alg, std::move(header), payload);
}

}  // namespace wimse::jose
