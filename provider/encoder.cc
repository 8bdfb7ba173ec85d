// ENCODERS for TPM keys (provider-guide §8):
//   SubjectPublicKeyInfo DER/PEM   the public half (`openssl pkey -pubout`, CSR/cert creation)
//   text                           `openssl pkey -text -noout`: public key + TPM facts, and a
//                                  line saying the private key is held in the TPM
//   PrivateKeyInfo DER/PEM         writes the TSS2 PRIVATE KEY file (TPM-wrapped blob, useless
//                                  outside this TPM) so `openssl genpkey/pkey -out` store keys
//                                  made by keymgmt gen; the convention tpm2-openssl uses.
// Registered for EC, RSA and RSA-PSS. The SPKI is assembled without fetching anything, so
// encoding can never recurse into another provider's encoders (or ours).
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include <cinttypes>
#include <cstring>
#include <new>
#include <string>

#include "crypto/public_key.h"
#include "keyfile/tss2_key.h"
#include "provider/provider.h"

namespace wimse::provider {

namespace {

// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes + unused-bits) }
const uint8_t kP256SpkiPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                   0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                   0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
// SEQUENCE { SEQUENCE { id-ecPublicKey, secp384r1 }, BIT STRING (97 bytes + unused-bits) }
const uint8_t kP384SpkiPrefix[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                   0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                   0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
// AlgorithmIdentifier { rsaEncryption, NULL } (RFC 3279) and { id-RSASSA-PSS } with absent
// parameters (RFC 4055 §3.1: an unrestricted PSS key).
const uint8_t kRsaAlgId[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                             0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
const uint8_t kRsaPssAlgId[] = {0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48,
                                0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a};

void AppendLength(Bytes* out, size_t len) {
  if (len < 0x80) {
    out->push_back(static_cast<uint8_t>(len));
  } else if (len < 0x100) {
    out->push_back(0x81);
    out->push_back(static_cast<uint8_t>(len));
  } else {
    out->push_back(0x82);
    out->push_back(static_cast<uint8_t>(len >> 8));
    out->push_back(static_cast<uint8_t>(len));
  }
}

void AppendTlv(Bytes* out, uint8_t tag, ByteView value) {
  out->push_back(tag);
  AppendLength(out, value.size());
  out->insert(out->end(), value.begin(), value.end());
}

// DER INTEGER of an unsigned big-endian magnitude: minimal, with a 0x00 when the top bit is set.
void AppendUnsignedInteger(Bytes* out, ByteView magnitude) {
  size_t i = 0;
  while (i + 1 < magnitude.size() && magnitude[i] == 0) {
    ++i;
  }
  Bytes v;
  if (magnitude.empty() || (magnitude[i] & 0x80) != 0) {
    v.push_back(0);
  }
  v.insert(v.end(), magnitude.begin() + static_cast<std::ptrdiff_t>(i), magnitude.end());
  AppendTlv(out, 0x02, v);
}

Bytes RsaSpki(const ProviderKey& key) {
  Bytes e_bytes = {static_cast<uint8_t>(key.exponent >> 24),
                   static_cast<uint8_t>(key.exponent >> 16),
                   static_cast<uint8_t>(key.exponent >> 8), static_cast<uint8_t>(key.exponent)};
  Bytes ints;
  AppendUnsignedInteger(&ints, key.modulus);
  AppendUnsignedInteger(&ints, e_bytes);
  Bytes rsa_public_key;
  AppendTlv(&rsa_public_key, 0x30, ints);
  Bytes bit_string = {0x00};
  bit_string.insert(bit_string.end(), rsa_public_key.begin(), rsa_public_key.end());
  Bytes body;
  if (key.type == KeyType::kRsaPss) {
    body.assign(kRsaPssAlgId, kRsaPssAlgId + sizeof(kRsaPssAlgId));
  } else {
    body.assign(kRsaAlgId, kRsaAlgId + sizeof(kRsaAlgId));
  }
  AppendTlv(&body, 0x03, bit_string);
  Bytes out;
  AppendTlv(&out, 0x30, body);
  return out;
}

enum class Format { kDer, kPem, kText, kTss2Der, kTss2Pem };

struct EncoderCtx {
  ProviderContext* prov = nullptr;
  Format format = Format::kDer;
  std::string
      cipher;  // asked for by `openssl pkey -aes256` and the like (OSSL_ENCODER_PARAM_CIPHER)
};

// A TSS2 key file has no pass-phrase encryption (its private part is wrapped by the TPM), so a
// request to encrypt it must fail rather than write the file unencrypted while reporting success.
int SetCtxParams(void* vctx, const OSSL_PARAM params[]) noexcept {
  auto* ctx = static_cast<EncoderCtx*>(vctx);
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ENCODER_PARAM_CIPHER);
  if (p != nullptr) {
    const char* name = nullptr;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
    try {
      ctx->cipher = name != nullptr ? name : "";
    } catch (...) {
      return 0;
    }
  }
  return 1;
}

const OSSL_PARAM kSettableCtxParams[] = {
    OSSL_PARAM_utf8_string(OSSL_ENCODER_PARAM_CIPHER, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_ENCODER_PARAM_PROPERTIES, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* SettableCtxParams(void* /*provctx*/) noexcept { return kSettableCtxParams; }

template <Format F>
void* NewCtx(void* provctx) noexcept {
  auto* ctx = new (std::nothrow) EncoderCtx();
  if (ctx != nullptr) {
    ctx->prov = static_cast<ProviderContext*>(provctx);
    ctx->format = F;
  }
  return ctx;
}

void FreeCtx(void* vctx) noexcept { delete static_cast<EncoderCtx*>(vctx); }

// SPKI carries the public key only; asking it for a private key must not silently produce a
// public key file.
int SpkiDoesSelection(void* /*provctx*/, int selection) noexcept {
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return 0;
  }
  return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 ? 1 : 0;
}

int TextDoesSelection(void* /*provctx*/, int selection) noexcept {
  return (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0 ? 1
                                                                                               : 0;
}

int Tss2DoesSelection(void* /*provctx*/, int selection) noexcept {
  return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 ? 1 : 0;
}

void PrintHexBlock(BIO* bio, ByteView data) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (i % 15 == 0) {
      BIO_printf(bio, "%s    ", i == 0 ? "" : "\n");
    }
    BIO_printf(bio, "%02x%s", data[i], i + 1 < data.size() ? ":" : "");
  }
  BIO_printf(bio, "\n");
}

void PrintText(BIO* bio, const ProviderKey& key) {
  if (key.is_rsa()) {
    BIO_printf(bio, "%s Public-Key: (%d bit)\n", key.type == KeyType::kRsaPss ? "RSA-PSS" : "RSA",
               key.bits());
    BIO_printf(bio, "Private-Key: held in the TPM (not exportable)\n");
    BIO_printf(bio, "Modulus:\n");
    Bytes n = {0x00};
    n.insert(n.end(), key.modulus.begin(), key.modulus.end());
    PrintHexBlock(bio, n);
    BIO_printf(bio, "Exponent: %" PRIu32 " (0x%" PRIx32 ")\n", key.exponent, key.exponent);
  } else {
    BIO_printf(bio, "Public-Key: (%d bit)\n", key.bits());
    BIO_printf(bio, "Private-Key: held in the TPM (not exportable)\n");
    BIO_printf(bio, "pub:\n");
    PrintHexBlock(bio, key.point);
    BIO_printf(bio, "ASN1 OID: %s\n", key.group_name());
    BIO_printf(bio, "NIST CURVE: %s\n", key.alg == KeyAlg::kEcP384 ? "P-384" : "P-256");
  }
  if (!key.key) {
    BIO_printf(bio, "(public key imported into wimsetpm: no TPM part)\n");
    return;
  }
  if (key.persistent_handle != 0) {
    BIO_printf(bio, "TPM persistent handle: 0x%08" PRIx32 "\n", key.persistent_handle);
  } else {
    BIO_printf(bio, "TPM parent: 0x%08" PRIx32 "\n", key.parent);
  }
  BIO_printf(bio, "TPM object attributes: 0x%08" PRIx32 "\n",
             static_cast<uint32_t>(key.key->public_area().objectAttributes));
  BIO_printf(bio, "TPM name: %s\n", HexEncode(key.key->name()).c_str());
}

int Encode(void* vctx, OSSL_CORE_BIO* cout, const void* obj_raw,
           const OSSL_PARAM /*obj_abstract*/[], int selection, OSSL_PASSPHRASE_CALLBACK* /*cb*/,
           void* /*cbarg*/) noexcept {
  auto* ctx = static_cast<EncoderCtx*>(vctx);
  const auto* key = static_cast<const ProviderKey*>(obj_raw);
  try {
    if (key == nullptr) {
      return 0;
    }
    BioPtr bio(BIO_new_from_core_bio(ctx->prov->libctx, cout));
    if (!bio) {
      return 0;
    }
    switch (ctx->format) {
      case Format::kText:
        PrintText(bio.get(), *key);
        return 1;
      case Format::kTss2Der:
      case Format::kTss2Pem: {
        if (!key->key) {
          WIMSE_PROV_RAISE(ctx->prov, kReasonPublicKeyOnly,
                           "an imported public key has no TSS2 key file");
          return 0;
        }
        if (!ctx->cipher.empty()) {
          WIMSE_PROV_RAISE(ctx->prov, kReasonPrivateExportRefused,
                           "a TSS2 key file cannot be encrypted with a pass phrase (%s): its "
                           "private part is already wrapped by the TPM; give the key an auth "
                           "value at keygen instead",
                           ctx->cipher.c_str());
          return 0;
        }
        if (key->persistent_handle != 0) {
          WIMSE_PROV_RAISE(ctx->prov, kReasonPrivateExportRefused,
                           "persistent key 0x%08x has no key file; refer to it as "
                           "handle:0x%08x",
                           key->persistent_handle, key->persistent_handle);
          return 0;
        }
        if (ctx->format == Format::kTss2Der) {
          auto der = EncodeTss2KeyDer(key->key->key_file());
          if (!der.ok()) {
            WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonInternal, der.error());
            return 0;
          }
          return BIO_write(bio.get(), der->data(), static_cast<int>(der->size())) ==
                         static_cast<int>(der->size())
                     ? 1
                     : 0;
        }
        auto pem = EncodeTss2KeyPem(key->key->key_file());
        if (!pem.ok()) {
          WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonInternal, pem.error());
          return 0;
        }
        return BIO_write(bio.get(), pem->data(), static_cast<int>(pem->size())) ==
                       static_cast<int>(pem->size())
                   ? 1
                   : 0;
      }
      case Format::kDer:
      case Format::kPem:
        break;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
      WIMSE_PROV_RAISE(ctx->prov, kReasonPrivateExportRefused,
                       "SubjectPublicKeyInfo holds public keys only");
      return 0;
    }
    auto der = SubjectPublicKeyInfoDer(*key);
    if (!der.ok()) {
      WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonInternal, der.error());
      return 0;
    }
    if (ctx->format == Format::kDer) {
      return BIO_write(bio.get(), der->data(), static_cast<int>(der->size())) ==
                     static_cast<int>(der->size())
                 ? 1
                 : 0;
    }
    return PEM_write_bio(bio.get(), "PUBLIC KEY", "", der->data(), static_cast<long>(der->size())) >
                   0
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

}  // namespace

Result<Bytes> SubjectPublicKeyInfoDer(const ProviderKey& key) {
  if (key.is_rsa()) {
    return RsaSpki(key);
  }
  ByteView prefix;
  switch (key.alg) {
    case KeyAlg::kEcP256:
      prefix = kP256SpkiPrefix;
      break;
    case KeyAlg::kEcP384:
      prefix = kP384SpkiPrefix;
      break;
    default:
      return Error(Layer::kInternal, "no SubjectPublicKeyInfo encoding for this key");
  }
  if (key.point.size() != 1 + 2 * key.field_size()) {
    return Error(Layer::kInternal, "EC point has the wrong size");
  }
  Bytes out(prefix.begin(), prefix.end());
  out.insert(out.end(), key.point.begin(), key.point.end());
  return out;
}

#define WIMSE_ENCODER(name, format, does_selection)                                             \
  const OSSL_DISPATCH name[] = {                                                                \
      {OSSL_FUNC_ENCODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx<format>)},                 \
      {OSSL_FUNC_ENCODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},                       \
      {OSSL_FUNC_ENCODER_DOES_SELECTION, reinterpret_cast<void (*)()>(does_selection)},         \
      {OSSL_FUNC_ENCODER_ENCODE, reinterpret_cast<void (*)()>(Encode)},                         \
      {OSSL_FUNC_ENCODER_SET_CTX_PARAMS, reinterpret_cast<void (*)()>(SetCtxParams)},           \
      {OSSL_FUNC_ENCODER_SETTABLE_CTX_PARAMS, reinterpret_cast<void (*)()>(SettableCtxParams)}, \
      {0, nullptr},                                                                             \
  }

WIMSE_ENCODER(kSpkiDerEncoderFunctions, Format::kDer, SpkiDoesSelection);
WIMSE_ENCODER(kSpkiPemEncoderFunctions, Format::kPem, SpkiDoesSelection);
WIMSE_ENCODER(kTextEncoderFunctions, Format::kText, TextDoesSelection);
WIMSE_ENCODER(kTss2DerEncoderFunctions, Format::kTss2Der, Tss2DoesSelection);
WIMSE_ENCODER(kTss2PemEncoderFunctions, Format::kTss2Pem, Tss2DoesSelection);

}  // namespace wimse::provider
