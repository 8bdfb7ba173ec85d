// SIGNATURE "ECDSA" with TPM-held keys (provider-guide §5).
//
// Hash in software (EVP_MD fetched from the provider's child library context with a query
// that excludes this provider), sign the digest in the TPM (tpm::WorkloadKey::SignDigest:
// TPM2_Sign with a NULL hash-check ticket, raw r||s), and return a minimal DER
// ECDSA-Sig-Value (C13: TPMs pad r and s to the field size; copying them into DER INTEGERs
// gives non-minimal encodings that strict verifiers reject about 1 time in 256).
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

#include <cstring>
#include <new>

#include "crypto/ecdsa.h"
#include "provider/provider.h"

namespace wimse::provider {
namespace {

struct SignatureCtx {
  ProviderContext* prov = nullptr;
  std::string propq;
  std::unique_ptr<ProviderKey> key;  // a copy sharing the WorkloadKey
  EvpMdPtr md;                       // set by digest_sign_init or the "digest" parameter
  HashAlg hash = HashAlg::kSha256;
  EvpMdCtxPtr mdctx;  // streaming digest state (digest_sign_update/final)
};

// AlgorithmIdentifier DER for ecdsa-with-SHA256/384/512 (RFC 5758 §3.2: parameters ABSENT;
// tpm2-openssl #150 emitted NULL parameters and broke strict verifiers).
const uint8_t kEcdsaSha256AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                     0xce, 0x3d, 0x04, 0x03, 0x02};
const uint8_t kEcdsaSha384AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                     0xce, 0x3d, 0x04, 0x03, 0x03};
const uint8_t kEcdsaSha512AlgId[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                     0xce, 0x3d, 0x04, 0x03, 0x04};

ByteView AlgorithmId(HashAlg hash) {
  switch (hash) {
    case HashAlg::kSha384:
      return kEcdsaSha384AlgId;
    case HashAlg::kSha512:
      return kEcdsaSha512AlgId;
    case HashAlg::kSha256:
    default:
      return kEcdsaSha256AlgId;
  }
}

// Fetches `mdname` from the child context (never from us) and maps it to a TPM hash. SHA-1,
// SHA-224, SHA-3 and the rest are refused: the TPM keys we make are SHA-2 only, and TLS never
// needs anything else for ECDSA.
bool SetDigest(SignatureCtx* ctx, const char* mdname) {
  EvpMdPtr md(EVP_MD_fetch(ctx->prov->libctx, mdname, ctx->prov->fetch_propq.c_str()));
  if (!md) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedDigest, "cannot fetch digest %s", mdname);
    return false;
  }
  switch (EVP_MD_get_type(md.get())) {
    case NID_sha256:
      ctx->hash = HashAlg::kSha256;
      break;
    case NID_sha384:
      ctx->hash = HashAlg::kSha384;
      break;
    case NID_sha512:
      ctx->hash = HashAlg::kSha512;
      break;
    default:
      WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedDigest,
                       "digest %s is not allowed (SHA-256/384/512 only)", mdname);
      return false;
  }
  ctx->md = std::move(md);
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
    return dst.release();
  } catch (...) {
    return nullptr;
  }
}

int SetCtxParams(void* vctx, const OSSL_PARAM params[]) noexcept;

bool InitKey(SignatureCtx* ctx, void* keydata) {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  if (key == nullptr) {
    if (!ctx->key) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "no key");
      return false;
    }
    return true;  // re-init with the same key
  }
  ctx->key = std::make_unique<ProviderKey>(*key);
  ctx->md.reset();
  ctx->mdctx.reset();
  ctx->hash = key->default_hash();
  return true;
}

int SignInit(void* vctx, void* keydata, const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata)) {
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

// Signs `digest` in the TPM and writes the minimal DER signature. `sig == nullptr` is a size
// query answered without TPM I/O (max-size; the real signature may be shorter, C13).
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
  auto raw = ctx->key->key->SignDigest(hash, digest);
  if (!raw.ok()) {
    int reason = raw.error().layer() == Layer::kTcti ? kReasonCannotConnect : kReasonTpmFailure;
    WIMSE_PROV_RAISE_ERROR(ctx->prov, reason, raw.error());
    return 0;
  }
  auto der = EcdsaRawToDer(*raw);
  if (!der.ok()) {
    WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonInternal, der.error());
    return 0;
  }
  if (der->size() > sigsize) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonBufferTooSmall, "signature needs %zu bytes, have %zu",
                     der->size(), sigsize);
    return 0;
  }
  std::memcpy(sig, der->data(), der->size());
  *siglen = der->size();
  return 1;
}

// EVP_PKEY_sign: pre-hashed input. Without a digest set, the hash is inferred from the
// length (32/48/64 bytes), as `openssl pkeyutl -sign` without -digest expects.
int Sign(void* vctx, unsigned char* sig, size_t* siglen, size_t sigsize,
         const unsigned char* tbs, size_t tbslen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    HashAlg hash = ctx->hash;
    if (!ctx->md) {
      switch (tbslen) {
        case 32:
          hash = HashAlg::kSha256;
          break;
        case 48:
          hash = HashAlg::kSha384;
          break;
        case 64:
          hash = HashAlg::kSha512;
          break;
        default:
          if (sig != nullptr) {
            WIMSE_PROV_RAISE(ctx->prov, kReasonWrongDataLength,
                             "input of %zu bytes is not a SHA-256/384/512 digest", tbslen);
            return 0;
          }
          break;
      }
    }
    return SignDigestInto(ctx, hash, ByteView(tbs, tbslen), sig, siglen, sigsize);
  } catch (...) {
    return 0;
  }
}

int DigestSignInit(void* vctx, const char* mdname, void* keydata,
                   const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  try {
    if (!InitKey(ctx, keydata)) {
      return 0;
    }
    const char* name = (mdname != nullptr && mdname[0] != '\0')
                           ? mdname
                           : HashName(ctx->key->default_hash());
    if (!SetDigest(ctx, name)) {
      return 0;
    }
    ctx->mdctx.reset(EVP_MD_CTX_new());
    if (!ctx->mdctx || EVP_DigestInit_ex2(ctx->mdctx.get(), ctx->md.get(), nullptr) != 1) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonInternal, "EVP_DigestInit_ex2 failed");
      return 0;
    }
    return SetCtxParams(vctx, params);
  } catch (...) {
    return 0;
  }
}

int DigestSignUpdate(void* vctx, const unsigned char* data, size_t datalen) noexcept {
  auto* ctx = static_cast<SignatureCtx*>(vctx);
  if (!ctx->mdctx) {
    WIMSE_PROV_RAISE(ctx->prov, kReasonNotInitialized, "digest_sign_init was not called");
    return 0;
  }
  return EVP_DigestUpdate(ctx->mdctx.get(), data, datalen);
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
    if (EVP_DigestFinal_ex(ctx->mdctx.get(), digest, &digest_len) != 1) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonInternal, "EVP_DigestFinal_ex failed");
      return 0;
    }
    return SignDigestInto(ctx, ctx->hash, ByteView(digest, digest_len), sig, siglen, sigsize);
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
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
  if (p != nullptr) {
    ByteView id = AlgorithmId(ctx->hash);
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
  return 1;
}

const OSSL_PARAM kGettableCtxParams[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, nullptr),
    OSSL_PARAM_END,
};

const OSSL_PARAM* GettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kGettableCtxParams;
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
      if (ctx->mdctx &&
          EVP_DigestInit_ex2(ctx->mdctx.get(), ctx->md.get(), nullptr) != 1) {
        return 0;
      }
    }
    return 1;
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM kSettableCtxParams[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* SettableCtxParams(void* /*vctx*/, void* /*provctx*/) noexcept {
  return kSettableCtxParams;
}

}  // namespace

const OSSL_DISPATCH kEcdsaSignatureFunctions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, reinterpret_cast<void (*)()>(NewCtx)},
    {OSSL_FUNC_SIGNATURE_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},
    {OSSL_FUNC_SIGNATURE_DUPCTX, reinterpret_cast<void (*)()>(DupCtx)},
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, reinterpret_cast<void (*)()>(SignInit)},
    {OSSL_FUNC_SIGNATURE_SIGN, reinterpret_cast<void (*)()>(Sign)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, reinterpret_cast<void (*)()>(DigestSignInit)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, reinterpret_cast<void (*)()>(DigestSignUpdate)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, reinterpret_cast<void (*)()>(DigestSignFinal)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, reinterpret_cast<void (*)()>(DigestSign)},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, reinterpret_cast<void (*)()>(GetCtxParams)},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, reinterpret_cast<void (*)()>(GettableCtxParams)},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, reinterpret_cast<void (*)()>(SetCtxParams)},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, reinterpret_cast<void (*)()>(SettableCtxParams)},
    {0, nullptr},
};

}  // namespace wimse::provider
