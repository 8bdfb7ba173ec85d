// SIGNATURE "ECDSA" and "RSA" (PKCS#1 v1.5 and PSS) with TPM-held keys (provider-guide §5).
//
// Hash in software (EVP_MD fetched from the provider's child library context with a query
// that excludes this provider), sign the digest in the TPM (tpm::WorkloadKey: TPM2_Sign with a
// NULL hash-check ticket) and return what OpenSSL expects:
//  - ECDSA: a minimal DER ECDSA-Sig-Value (C13: TPMs pad r and s to the field size; copying
//    them into DER INTEGERs gives non-minimal encodings that strict verifiers reject about 1
//    time in 256). A digest longer than the curve is truncated by the TPM as FIPS 186-4 says,
//    so P-256 with SHA-512 verifies in software.
//  - RSA: the raw modulus-size signature. PSS always has salt length = digest length (TLS 1.3
//    rule): requests for another fixed salt length are refused, and every signature made for
//    a "digest"-length request is checked in software before it is returned, so a TPM that
//    uses the maximum salt (tpm2-openssl #114, C12) fails with a clear reason instead of
//    breaking the peer.
// Verification (verify, digest_verify) is delegated to the default provider on a software copy
// of the public key: never TPM2_LoadExternal (tpm2-openssl #84/#113).
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

#include "crypto/ecdsa.h"
#include "crypto/tpm_public.h"
#include "provider/provider.h"

namespace wimse::provider {
namespace {

// OpenSSL 3.1+ "auto-digestmax"; not in the 3.0 headers.
constexpr int kSaltLenAutoDigestMax = -4;

enum class Operation { kNone, kSign, kVerify };

struct SignatureCtx {
  ProviderContext* prov = nullptr;
  std::string propq;
  std::unique_ptr<ProviderKey> key;  // a copy sharing the WorkloadKey
  Operation operation = Operation::kNone;
  EvpMdPtr md;  // set by digest_*_init or the "digest" parameter
  HashAlg hash = HashAlg::kSha256;
  EvpMdCtxPtr mdctx;  // streaming digest state (digest_*_update/final)
  // RSA only.
  int pad_mode = RSA_PKCS1_PADDING;
  int saltlen = RSA_PSS_SALTLEN_DIGEST;
  std::optional<HashAlg> mgf1;
};

// AlgorithmIdentifier DER (RFC 5758 §3.2: ECDSA parameters ABSENT, tpm2-openssl #150;
// RFC 4055: sha*WithRSAEncryption with NULL parameters, RSASSA-PSS with RSASSA-PSS-params
// {hash, MGF1(hash), saltLength = digest length}, byte-identical to what OpenSSL 3 writes).
const uint8_t kEcdsaSha256AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                     0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
const uint8_t kEcdsaSha384AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                     0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
const uint8_t kEcdsaSha512AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                     0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};
const uint8_t kRsaSha256AlgId[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                   0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
const uint8_t kRsaSha384AlgId[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                   0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00};
const uint8_t kRsaSha512AlgId[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                   0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00};

// RSASSA-PSS AlgorithmIdentifier; bytes 30 and 60 hold the SHA-2 OID's last arc (01/02/03 for
// SHA-256/384/512), byte 66 the salt length.
Bytes PssAlgorithmId(HashAlg hash) {
  Bytes id = {0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
              0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
              0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
              0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
              0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20};
  uint8_t arc = hash == HashAlg::kSha384 ? 0x02 : hash == HashAlg::kSha512 ? 0x03 : 0x01;
  id[29] = arc;
  id[59] = arc;
  id[66] = static_cast<uint8_t>(HashSize(hash));
  return id;
}

Bytes AlgorithmId(const SignatureCtx& ctx) {
  auto make = [](const uint8_t* p, size_t n) { return Bytes(p, p + n); };
  if (ctx.key && ctx.key->is_rsa()) {
    if (ctx.pad_mode == RSA_PKCS1_PSS_PADDING) {
      return PssAlgorithmId(ctx.hash);
    }
    switch (ctx.hash) {
      case HashAlg::kSha384:
        return make(kRsaSha384AlgId, sizeof(kRsaSha384AlgId));
      case HashAlg::kSha512:
        return make(kRsaSha512AlgId, sizeof(kRsaSha512AlgId));
      case HashAlg::kSha256:
      default:
        return make(kRsaSha256AlgId, sizeof(kRsaSha256AlgId));
    }
  }
  switch (ctx.hash) {
    case HashAlg::kSha384:
      return make(kEcdsaSha384AlgId, sizeof(kEcdsaSha384AlgId));
    case HashAlg::kSha512:
      return make(kEcdsaSha512AlgId, sizeof(kEcdsaSha512AlgId));
    case HashAlg::kSha256:
    default:
      return make(kEcdsaSha256AlgId, sizeof(kEcdsaSha256AlgId));
  }
}

// Fetches `mdname` from the child context (never from us) and maps it to a TPM hash. SHA-1,
// SHA-224, SHA-3 and the rest are refused: TLS 1.2/1.3 never need them with these keys.
Result<std::pair<EvpMdPtr, HashAlg>> FetchDigest(ProviderContext* prov, const char* mdname) {
  EvpMdPtr md;
  {
    std::lock_guard<std::mutex> lock(prov->digests.mu);
    for (auto& [name, cached] : prov->digests.entries) {
      if (name == mdname && EVP_MD_up_ref(cached) == 1) {
        md.reset(cached);
        break;
      }
    }
  }
  if (!md) {
    ERR_set_mark();
    md.reset(EVP_MD_fetch(prov->libctx, mdname, prov->fetch_propq.c_str()));
    if (!md) {
      // The application has no software digests (only wimsetpm loaded): use our own default
      // provider rather than fail.
      md.reset(EVP_MD_fetch(prov->swctx, mdname, nullptr));
    }
    ERR_pop_to_mark();
    if (!md) {
      return Error(Layer::kUsage, std::string("cannot fetch digest ") + mdname);
    }
    std::lock_guard<std::mutex> lock(prov->digests.mu);
    if (prov->digests.entries.size() < 16 && EVP_MD_up_ref(md.get()) == 1) {
      prov->digests.entries.emplace_back(mdname, md.get());
    }
  }
  switch (EVP_MD_get_type(md.get())) {
    case NID_sha256:
      return std::make_pair(std::move(md), HashAlg::kSha256);
    case NID_sha384:
      return std::make_pair(std::move(md), HashAlg::kSha384);
    case NID_sha512:
      return std::make_pair(std::move(md), HashAlg::kSha512);
    default:
      return Error(Layer::kUsage,
                   std::string("digest ") + mdname + " is not allowed (SHA-256/384/512 only)");
  }
}

bool SetDigest(SignatureCtx* ctx, const char* mdname) {
  auto fetched = FetchDigest(ctx->prov, mdname);
  if (!fetched.ok()) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedDigest, "%s", fetched.error().message().c_str());
    return false;
  }
  ctx->md = std::move(fetched->first);
  ctx->hash = fetched->second;
  return true;
}

void* NewCtx(void* provctx, const char* propq) noexcept {
  try {
    auto ctx = std::make_unique<SignatureCtx>();
    ctx->prov = static_cast<ProviderContext*>(provctx);
    if (propq != nullptr) {
      ctx->propq = propq;
    }
    return ctx.release();
  } catch (...) {
    return nullptr;
  }
}

void FreeCtx(void* vctx) noexcept { delete static_cast<SignatureCtx*>(vctx); }

// Mandatory on OpenSSL 3.0: EVP_DigestSignFinal duplicates the context first and fails the
// signature if that fails (openssl #20364). Software hashing makes this a plain copy.
void* DupCtx(void* vctx) noexcept {
  const auto* src = static_cast<const SignatureCtx*>(vctx);
  try {
    auto dst = std::make_unique<SignatureCtx>();
    dst->prov = src->prov;
    dst->propq = src->propq;
    dst->operation = src->operation;
    if (src->key) {
      dst->key = std::make_unique<ProviderKey>(*src->key);
    }
    if (src->md) {
      if (EVP_MD_up_ref(src->md.get()) != 1) {
        return nullptr;
      }
      dst->md.reset(src->md.get());
    }
    dst->hash = src->hash;
    if (src->mdctx) {
      dst->mdctx.reset(EVP_MD_CTX_new());
      if (!dst->mdctx || EVP_MD_CTX_copy_ex(dst->mdctx.get(), src->mdctx.get()) != 1) {
        return nullptr;
      }
    }
    dst->pad_mode = src->pad_mode;
    dst->saltlen = src->saltlen;
    dst->mgf1 = src->mgf1;
    return dst.release();
  } catch (...) {
    return nullptr;
  }
}

int SetCtxParams(void* vctx, const OSSL_PARAM params[]) noexcept;

bool InitKey(SignatureCtx* ctx, void* keydata, Operation operation) {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  ctx->operation = operation;
  if (key == nullptr) {
    if (!ctx->key) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "no key");
      return false;
    }
    return true;  // re-init with the same key
  }
  if (operation == Operation::kSign && !key->key) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonPublicKeyOnly,
                     "this %s key was imported as a public key; only keys loaded from a TPM "
                     "key file or handle: can sign",
                     key->type_name());
    return false;
  }
  ctx->key = std::make_unique<ProviderKey>(*key);
  ctx->md.reset();
  ctx->mdctx.reset();
  ctx->hash = key->default_hash();
  ctx->pad_mode = key->type == KeyType::kRsaPss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
  ctx->saltlen = RSA_PSS_SALTLEN_DIGEST;
  ctx->mgf1.reset();
  return true;
}

int SignInit(void* vctx, void* keydata, const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata, Operation::kSign)) {
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

int VerifyInit(void* vctx, void* keydata, const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata, Operation::kVerify)) {
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

// The requested scheme must be one the key's TPM public area allows (tpm2-openssl #55: a key
// bound to RSASSA-SHA256 asked for PSS fails inside the TPM with a bare 0x2d2 otherwise).
bool CheckScheme(SignatureCtx* ctx, HashAlg hash) {
  const ProviderKey& key = *ctx->key;
  if (key.fixed_hash && *key.fixed_hash != hash) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "the TPM key is bound to %s; %s was requested", HashName(*key.fixed_hash),
                     HashName(hash));
    return false;
  }
  if (!key.is_rsa()) {
    return true;
  }
  if (key.fixed_scheme == TPM2_ALG_RSASSA && ctx->pad_mode != RSA_PKCS1_PADDING) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "the TPM key is bound to RSASSA (PKCS#1 v1.5); PSS was requested");
    return false;
  }
  if (key.fixed_scheme == TPM2_ALG_RSAPSS && ctx->pad_mode != RSA_PKCS1_PSS_PADDING) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "the TPM key is bound to RSAPSS; PKCS#1 v1.5 was requested");
    return false;
  }
  if (ctx->pad_mode == RSA_PKCS1_PSS_PADDING) {
    if (ctx->mgf1 && *ctx->mgf1 != hash) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                       "the TPM uses one hash for PSS and MGF1: mgf1 %s != digest %s",
                       HashName(*ctx->mgf1), HashName(hash));
      return false;
    }
    if (ctx->saltlen == RSA_PSS_SALTLEN_MAX) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch,
                       "PSS salt length \"max\" cannot be produced: the TPM signs with salt "
                       "length = digest length (%zu); ask for \"digest\"",
                       HashSize(hash));
      return false;
    }
    if (ctx->saltlen >= 0 && static_cast<size_t>(ctx->saltlen) != HashSize(hash)) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch,
                       "PSS salt length %d cannot be produced: the TPM signs with salt length "
                       "= digest length (%zu)",
                       ctx->saltlen, HashSize(hash));
      return false;
    }
  }
  return true;
}

// Verifies `sig` over `digest` in software (default provider, child context) with the
// context's scheme; `saltlen` overrides the PSS salt length. Returns 1 valid, 0 invalid.
int SoftwareVerify(SignatureCtx* ctx, HashAlg hash, const EVP_MD* md, ByteView digest, ByteView sig,
                   int saltlen) {
  ProviderContext* prov = ctx->prov;
  if (!ctx->key->software_public) {
    WIMSE_PROV_RAISE(prov, kReasonNotInitialized,
                     "no software provider to verify with (activate the default provider)");
    return 0;
  }
  const ProviderKey& key = *ctx->key;
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_pkey(
      key.software_libctx, key.software_public.get(),
      key.software_propq.empty() ? nullptr : key.software_propq.c_str()));
  if (!pctx || EVP_PKEY_verify_init(pctx.get()) != 1) {
    return 0;
  }
  EvpMdPtr own_md;
  if (md == nullptr) {
    auto fetched = FetchDigest(prov, HashName(hash));
    if (!fetched.ok()) {
      return 0;
    }
    own_md = std::move(fetched->first);
    md = own_md.get();
  }
  if (EVP_PKEY_CTX_set_signature_md(pctx.get(), md) != 1) {
    return 0;
  }
  if (ctx->key->is_rsa()) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx.get(), ctx->pad_mode) != 1) {
      return 0;
    }
    if (ctx->pad_mode == RSA_PKCS1_PSS_PADDING &&
        (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx.get(), saltlen) != 1 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx.get(), md) != 1)) {
      return 0;
    }
  }
  return EVP_PKEY_verify(pctx.get(), sig.data(), sig.size(), digest.data(), digest.size()) == 1 ? 1
                                                                                                : 0;
}

// Signs `digest` in the TPM and writes the signature. `sig == nullptr` is a size query answered
// without TPM I/O (max-size; an ECDSA signature may be shorter, C13).
int SignDigestInto(SignatureCtx* ctx, HashAlg hash, ByteView digest, unsigned char* sig,
                   size_t* siglen, size_t sigsize) {
  if (!ctx->key) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "signature context has no key");
    return 0;
  }
  size_t max = ctx->key->max_signature_size();
  if (sig == nullptr) {
    *siglen = max;
    return 1;
  }
  if (digest.size() != HashSize(hash)) {
    // The TPM would answer TPM_RC_SIZE (tpm2-openssl #80); say what is wrong instead.
    WIMSE_PROV_RAISE(ctx->prov, kReasonWrongDataLength, "digest is %zu bytes, %s needs %zu",
                     digest.size(), HashName(hash), HashSize(hash));
    return 0;
  }
  if (!CheckScheme(ctx, hash)) {
    return 0;
  }
  const ProviderKey& key = *ctx->key;
  if (!key.key) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonPublicKeyOnly, "the key has no TPM part");
    return 0;
  }
  // The PSS self-check in src/ builds EVP_PKEY contexts in the NULL library context.
  if (!key.key->has_auth() && key.key->auth_required_by_file()) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonAuthFailure,
                     "this TSS2 key file says the key has an authorization value and none was "
                     "given (openssl: -passin file:F or env:VAR; applications: the passphrase "
                     "callback); nothing was sent to the TPM");
    return 0;
  }
  // An auth value the TPM cannot accept (too long) or already rejected: refused here, so a
  // TLS server with a wrong pass phrase does not spend a dictionary-attack strike per
  // handshake (WorkloadKey checks again under the TPM lock).
  if (Status usable = key.key->CheckAuthUsable(); !usable.ok()) {
    WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonAuthFailure, usable.error());
    return 0;
  }
  SoftwareCtxScope software(ctx->prov);
  Result<Bytes> out = Error(Layer::kInternal, "unset");
  if (key.is_rsa()) {
    auto scheme = ctx->pad_mode == RSA_PKCS1_PSS_PADDING ? tpm::WorkloadKey::RsaScheme::kPss
                                                         : tpm::WorkloadKey::RsaScheme::kPkcs1v15;
    out = key.key->SignDigestRsa(hash, digest, scheme);
  } else {
    auto raw = key.key->SignDigest(hash, digest);
    out = raw.ok() ? EcdsaRawToDer(*raw) : std::move(raw);
  }
  if (!out.ok()) {
    WIMSE_PROV_RAISE_ERROR(ctx->prov, ReasonForError(out.error(), kReasonTpmFailure), out.error());
    return 0;
  }
  ctx->prov->signatures.fetch_add(1, std::memory_order_relaxed);
  if (key.is_rsa() && ctx->pad_mode == RSA_PKCS1_PSS_PADDING &&
      ctx->saltlen != RSA_PSS_SALTLEN_AUTO) {
    // C12: the caller needs salt = digest length; prove it before handing the signature out.
    if (SoftwareVerify(ctx, hash, nullptr, digest, *out, RSA_PSS_SALTLEN_DIGEST) != 1) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch,
                       "the TPM produced a PSS signature whose salt length is not the digest "
                       "length (%zu); TLS 1.3 peers would reject it",
                       HashSize(hash));
      return 0;
    }
  }
  if (out->size() > sigsize) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonBufferTooSmall, "signature needs %zu bytes, have %zu",
                     out->size(), sigsize);
    return 0;
  }
  std::memcpy(sig, out->data(), out->size());
  *siglen = out->size();
  return 1;
}

// Hash implied by a pre-hashed input's length (ECDSA only: `openssl pkeyutl -sign` without
// -digest).
std::optional<HashAlg> HashForLength(size_t len) {
  switch (len) {
    case 32:
      return HashAlg::kSha256;
    case 48:
      return HashAlg::kSha384;
    case 64:
      return HashAlg::kSha512;
    default:
      return std::nullopt;
  }
}

// EVP_PKEY_sign: pre-hashed input. Without a digest set, ECDSA infers the hash from the length
// (32/48/64 bytes); RSA refuses, because OpenSSL's meaning of "no digest" for RSA is "pad the
// raw input without a DigestInfo", which TPM2_Sign cannot do (guide §5.7).
int Sign(void* vctx, unsigned char* sig, size_t* siglen, size_t sigsize, const unsigned char* tbs,
         size_t tbslen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!ctx->key) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "signature context has no key");
      return 0;
    }
    HashAlg hash = ctx->hash;
    if (!ctx->md && sig != nullptr) {
      auto inferred = HashForLength(tbslen);
      if (ctx->key->is_rsa()) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                         "RSA signing of pre-hashed input needs the digest named (e.g. "
                         "-pkeyopt digest:sha256); the TPM cannot sign raw input");
        return 0;
      }
      if (!inferred) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonWrongDataLength,
                         "input of %zu bytes is not a SHA-256/384/512 digest", tbslen);
        return 0;
      }
      hash = *inferred;
    }
    return SignDigestInto(ctx, hash, ByteView(tbs, tbslen), sig, siglen, sigsize);
  } catch (...) {
    return 0;
  }
}

int Verify(void* vctx, const unsigned char* sig, size_t siglen, const unsigned char* tbs,
           size_t tbslen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!ctx->key) {
      return 0;
    }
    HashAlg hash = ctx->hash;
    if (!ctx->md) {
      auto inferred = HashForLength(tbslen);
      if (!inferred) {
        return 0;
      }
      hash = *inferred;
    }
    return SoftwareVerify(ctx, hash, ctx->md.get(), ByteView(tbs, tbslen), ByteView(sig, siglen),
                          ctx->saltlen);
  } catch (...) {
    return 0;
  }
}

bool DigestInit(SignatureCtx* ctx, const char* mdname) {
  const char* name =
      (mdname != nullptr && mdname[0] != '\0') ? mdname : HashName(ctx->key->default_hash());
  if (!SetDigest(ctx, name)) {
    return false;
  }
  ctx->mdctx.reset(EVP_MD_CTX_new());
  if (!ctx->mdctx || EVP_DigestInit_ex2(ctx->mdctx.get(), ctx->md.get(), nullptr) != 1) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonInternal, "EVP_DigestInit_ex2 failed");
    return false;
  }
  return true;
}

int DigestSignInit(void* vctx, const char* mdname, void* keydata,
                   const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata, Operation::kSign) || !DigestInit(ctx, mdname)) {
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

int DigestVerifyInit(void* vctx, const char* mdname, void* keydata,
                     const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata, Operation::kVerify) || !DigestInit(ctx, mdname)) {
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

int DigestUpdate(void* vctx, const unsigned char* data, size_t datalen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  if (!ctx->mdctx) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "digest_*_init was not called");
    return 0;
  }
  return EVP_DigestUpdate(ctx->mdctx.get(), data, datalen);
}

bool FinishDigest(SignatureCtx* ctx, uint8_t* digest, unsigned int* len) {
  if (EVP_DigestFinal_ex(ctx->mdctx.get(), digest, len) != 1) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonInternal, "EVP_DigestFinal_ex failed");
    return false;
  }
  return true;
}

int DigestSignFinal(void* vctx, unsigned char* sig, size_t* siglen, size_t sigsize) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!ctx->mdctx) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "digest_sign_init was not called");
      return 0;
    }
    if (sig == nullptr) {
      return SignDigestInto(ctx, ctx->hash, {}, nullptr, siglen, sigsize);
    }
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (!FinishDigest(ctx, digest, &digest_len)) {
      return 0;
    }
    return SignDigestInto(ctx, ctx->hash, ByteView(digest, digest_len), sig, siglen, sigsize);
  } catch (...) {
    return 0;
  }
}

int DigestVerifyFinal(void* vctx, const unsigned char* sig, size_t siglen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!ctx->mdctx || !ctx->key) {
      return 0;
    }
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (!FinishDigest(ctx, digest, &digest_len)) {
      return 0;
    }
    return SoftwareVerify(ctx, ctx->hash, ctx->md.get(), ByteView(digest, digest_len),
                          ByteView(sig, siglen), ctx->saltlen);
  } catch (...) {
    return 0;
  }
}

// One-shot EVP_DigestSign (libssl CertificateVerify, X509_sign).
int DigestSign(void* vctx, unsigned char* sig, size_t* siglen, size_t sigsize,
               const unsigned char* tbs, size_t tbslen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!ctx->md) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "digest_sign_init was not called");
      return 0;
    }
    if (sig == nullptr) {
      return SignDigestInto(ctx, ctx->hash, {}, nullptr, siglen, sigsize);
    }
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EvpMdCtxPtr mdctx(EVP_MD_CTX_new());
    if (!mdctx || EVP_DigestInit_ex2(mdctx.get(), ctx->md.get(), nullptr) != 1 ||
        EVP_DigestUpdate(mdctx.get(), tbs, tbslen) != 1 ||
        EVP_DigestFinal_ex(mdctx.get(), digest, &digest_len) != 1) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonInternal, "software digest failed");
      return 0;
    }
    return SignDigestInto(ctx, ctx->hash, ByteView(digest, digest_len), sig, siglen, sigsize);
  } catch (...) {
    return 0;
  }
}

int GetCtxParams(void* vctx, OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  if (params == nullptr) {
    return 1;
  }
  try {
    OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
    if (p != nullptr) {
      Bytes id = AlgorithmId(*ctx);
      if (OSSL_PARAM_set_octet_string(p, id.data(), id.size()) != 1) {
        return 0;
      }
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != nullptr && OSSL_PARAM_set_utf8_string(p, HashName(ctx->hash)) != 1) {
      return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST_SIZE);
    if (p != nullptr && OSSL_PARAM_set_size_t(p, HashSize(ctx->hash)) != 1) {
      return 0;
    }
    if (ctx->key && ctx->key->is_rsa()) {
      p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
      if (p != nullptr) {
        bool ok = p->data_type == OSSL_PARAM_UTF8_STRING
                      ? OSSL_PARAM_set_utf8_string(p, ctx->pad_mode == RSA_PKCS1_PSS_PADDING
                                                          ? OSSL_PKEY_RSA_PAD_MODE_PSS
                                                          : OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 1
                      : OSSL_PARAM_set_int(p, ctx->pad_mode) == 1;
        if (!ok) {
          return 0;
        }
      }
      p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
      if (p != nullptr) {
        // What we actually produce: salt length = digest length.
        int produced = static_cast<int>(HashSize(ctx->hash));
        bool ok = p->data_type == OSSL_PARAM_UTF8_STRING
                      ? OSSL_PARAM_set_utf8_string(p, std::to_string(produced).c_str()) == 1
                      : OSSL_PARAM_set_int(p, produced) == 1;
        if (!ok) {
          return 0;
        }
      }
      p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
      if (p != nullptr && OSSL_PARAM_set_utf8_string(p, HashName(ctx->hash)) != 1) {
        return 0;
      }
    }
    return 1;
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM kEcGettableCtxParams[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, nullptr),
    OSSL_PARAM_END,
};
const OSSL_PARAM kRsaGettableCtxParams[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* EcGettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kEcGettableCtxParams;
}
const OSSL_PARAM* RsaGettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kRsaGettableCtxParams;
}

// pad-mode arrives as an int (direct OSSL_PARAM users) or as a string
// (EVP_PKEY_CTX_set_rsa_padding through ctrl_params_translate.c); accept both (guide §5.3).
bool ParsePadMode(SignatureCtx* ctx, const OSSL_PARAM* p) {
  int mode = 0;
  if (p->data_type == OSSL_PARAM_UTF8_STRING) {
    const char* s = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &s) != 1 || s == nullptr) {
      return false;
    }
    std::string_view v(s);
    if (v == OSSL_PKEY_RSA_PAD_MODE_PKCSV15) {
      mode = RSA_PKCS1_PADDING;
    } else if (v == OSSL_PKEY_RSA_PAD_MODE_PSS) {
      mode = RSA_PKCS1_PSS_PADDING;
    } else {
      WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                       "padding mode %s is not supported (pkcs1 or pss)", s);
      return false;
    }
  } else if (OSSL_PARAM_get_int(p, &mode) != 1) {
    return false;
  }
  if (mode != RSA_PKCS1_PADDING && mode != RSA_PKCS1_PSS_PADDING) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "padding mode %d is not supported (PKCS#1 v1.5 or PSS)", mode);
    return false;
  }
  if (ctx->key && ctx->key->fixed_scheme == TPM2_ALG_RSASSA && mode != RSA_PKCS1_PADDING) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "the TPM key is bound to RSASSA (PKCS#1 v1.5); PSS is not possible");
    return false;
  }
  if (ctx->key && ctx->key->fixed_scheme == TPM2_ALG_RSAPSS && mode != RSA_PKCS1_PSS_PADDING) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedScheme,
                     "the TPM key is bound to RSAPSS; PKCS#1 v1.5 is not possible");
    return false;
  }
  ctx->pad_mode = mode;
  return true;
}

// saltlen: "digest", "auto", "max", "auto-digestmax" or a decimal string, or the int forms.
// A fixed length other than the digest length is refused when signing (CheckScheme).
bool ParseSaltLen(SignatureCtx* ctx, const OSSL_PARAM* p) {
  int len = 0;
  if (p->data_type == OSSL_PARAM_UTF8_STRING) {
    const char* s = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &s) != 1 || s == nullptr) {
      return false;
    }
    std::string_view v(s);
    if (v == OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) {
      len = RSA_PSS_SALTLEN_DIGEST;
    } else if (v == OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) {
      len = RSA_PSS_SALTLEN_AUTO;
    } else if (v == OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) {
      len = RSA_PSS_SALTLEN_MAX;
    } else if (v == "auto-digestmax") {
      len = kSaltLenAutoDigestMax;
    } else {
      char* end = nullptr;
      long n = std::strtol(s, &end, 10);
      if (v.empty() || end == nullptr || *end != '\0' || n < 0 || n > 1024) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch,
                         "PSS salt length \"%s\" is not understood (digest, auto, max or a "
                         "number)",
                         s);
        return false;
      }
      len = static_cast<int>(n);
    }
  } else if (OSSL_PARAM_get_int(p, &len) != 1) {
    return false;
  }
  if (len < kSaltLenAutoDigestMax) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch, "PSS salt length %d is invalid", len);
    return false;
  }
  ctx->saltlen = len;
  return true;
}

int SetCtxParams(void* vctx, const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  if (params == nullptr) {
    return 1;
  }
  try {
    const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != nullptr) {
      const char* mdname = nullptr;
      if (OSSL_PARAM_get_utf8_string_ptr(p, &mdname) != 1 || mdname == nullptr) {
        return 0;
      }
      if (!SetDigest(ctx, mdname)) {
        return 0;
      }
      if (ctx->mdctx && EVP_DigestInit_ex2(ctx->mdctx.get(), ctx->md.get(), nullptr) != 1) {
        return 0;
      }
    }
    bool rsa = ctx->key && ctx->key->is_rsa();
    // RSA options on an EC key are a caller's mistake: say so rather than ignore or fail
    // without a reason.
    for (const char* name : {OSSL_SIGNATURE_PARAM_PAD_MODE, OSSL_SIGNATURE_PARAM_PSS_SALTLEN,
                             OSSL_SIGNATURE_PARAM_MGF1_DIGEST}) {
      if (!rsa && OSSL_PARAM_locate_const(params, name) != nullptr) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonOptionMismatch,
                         "\"%s\" is an RSA signature option; this is an %s key", name,
                         ctx->key ? ctx->key->type_name() : "unknown");
        return 0;
      }
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != nullptr && !ParsePadMode(ctx, p)) {
      return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
    if (p != nullptr && !ParseSaltLen(ctx, p)) {
      return 0;
    }
    // A fixed salt length other than the digest's is refused as soon as both are known (and
    // again when signing, whichever is set last).
    if (ctx->operation == Operation::kSign && ctx->md && ctx->pad_mode == RSA_PKCS1_PSS_PADDING &&
        ctx->saltlen >= 0 && static_cast<size_t>(ctx->saltlen) != HashSize(ctx->hash)) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonPssSaltMismatch,
                       "PSS salt length %d cannot be produced: the TPM signs with salt length "
                       "= digest length (%zu)",
                       ctx->saltlen, HashSize(ctx->hash));
      return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
    if (p != nullptr) {
      const char* mdname = nullptr;
      if (OSSL_PARAM_get_utf8_string_ptr(p, &mdname) != 1 || mdname == nullptr) {
        return 0;
      }
      auto fetched = FetchDigest(ctx->prov, mdname);
      if (!fetched.ok()) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedDigest, "mgf1: %s",
                         fetched.error().message().c_str());
        return 0;
      }
      ctx->mgf1 = fetched->second;
    }
    return 1;
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM kEcSettableCtxParams[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kRsaSettableCtxParams[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* EcSettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kEcSettableCtxParams;
}
const OSSL_PARAM* RsaSettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kRsaSettableCtxParams;
}

#define WIMSE_FN(id, fn) \
  { id, reinterpret_cast<void (*)()>(fn) }

#define WIMSE_SIGNATURE_COMMON                                                                     \
  WIMSE_FN(OSSL_FUNC_SIGNATURE_NEWCTX, NewCtx), WIMSE_FN(OSSL_FUNC_SIGNATURE_FREECTX, FreeCtx),    \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DUPCTX, DupCtx),                                                \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_SIGN_INIT, SignInit), WIMSE_FN(OSSL_FUNC_SIGNATURE_SIGN, Sign), \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_VERIFY_INIT, VerifyInit),                                       \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_VERIFY, Verify),                                                \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, DigestSignInit),                              \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, DigestUpdate),                              \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, DigestSignFinal),                            \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, DigestSign),                                       \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, DigestVerifyInit),                          \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, DigestUpdate),                            \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, DigestVerifyFinal),                        \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, GetCtxParams),                                  \
      WIMSE_FN(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, SetCtxParams)

}  // namespace

const OSSL_DISPATCH kEcdsaSignatureFunctions[] = {
    WIMSE_SIGNATURE_COMMON,
    WIMSE_FN(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, EcGettableCtxParams),
    WIMSE_FN(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, EcSettableCtxParams),
    {0, nullptr},
};

const OSSL_DISPATCH kRsaSignatureFunctions[] = {
    WIMSE_SIGNATURE_COMMON,
    WIMSE_FN(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, RsaGettableCtxParams),
    WIMSE_FN(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, RsaSettableCtxParams),
    {0, nullptr},
};

}  // namespace wimse::provider
