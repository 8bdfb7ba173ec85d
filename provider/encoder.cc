// ENCODERS for the public half of TPM EC keys (provider-guide §8): SubjectPublicKeyInfo as
// DER and PEM (`openssl pkey -pubout`, CSR/cert creation), and text (`openssl pkey -text`).
// No private-key encoder yet: the TSS2 file is written by our own library/CLI.
//
// The SPKI is assembled from fixed RFC 5480 prefixes, without fetching anything, so encoding
// can never recurse into another provider's encoders (or ours).
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <cinttypes>
#include <cstring>
#include <new>

#include "crypto/public_key.h"
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

enum class Format { kDer, kPem, kText };

struct EncoderCtx {
  ProviderContext* prov = nullptr;
  Format format = Format::kDer;
};

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
  return (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0
             ? 1
             : 0;
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

int Encode(void* vctx, OSSL_CORE_BIO* cout, const void* obj_raw,
           const OSSL_PARAM /*obj_abstract*/[], int selection,
           OSSL_PASSPHRASE_CALLBACK* /*cb*/, void* /*cbarg*/) noexcept {
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
    if (ctx->format == Format::kText) {
      BIO_printf(bio.get(), "Public-Key: (%d bit)\n", key->bits());
      BIO_printf(bio.get(), "Private-Key: held in the TPM (not exportable)\n");
      BIO_printf(bio.get(), "pub:\n");
      PrintHexBlock(bio.get(), key->point);
      BIO_printf(bio.get(), "ASN1 OID: %s\n", key->group_name());
      BIO_printf(bio.get(), "NIST CURVE: %s\n", key->alg == KeyAlg::kEcP384 ? "P-384" : "P-256");
      BIO_printf(bio.get(), "TPM parent: 0x%08" PRIx32 "\n", key->parent);
      BIO_printf(bio.get(), "TPM object attributes: 0x%08" PRIx32 "\n",
                 static_cast<uint32_t>(key->key->public_area().objectAttributes));
      BIO_printf(bio.get(), "TPM name: %s\n", HexEncode(key->key->name()).c_str());
      return 1;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
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
    return PEM_write_bio(bio.get(), "PUBLIC KEY", "", der->data(),
                         static_cast<long>(der->size())) > 0
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

}  // namespace

Result<Bytes> SubjectPublicKeyInfoDer(const ProviderKey& key) {
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

const OSSL_DISPATCH kEcSpkiDerEncoderFunctions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx<Format::kDer>)},
    {OSSL_FUNC_ENCODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, reinterpret_cast<void (*)()>(SpkiDoesSelection)},
    {OSSL_FUNC_ENCODER_ENCODE, reinterpret_cast<void (*)()>(Encode)},
    {0, nullptr},
};

const OSSL_DISPATCH kEcSpkiPemEncoderFunctions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx<Format::kPem>)},
    {OSSL_FUNC_ENCODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, reinterpret_cast<void (*)()>(SpkiDoesSelection)},
    {OSSL_FUNC_ENCODER_ENCODE, reinterpret_cast<void (*)()>(Encode)},
    {0, nullptr},
};

const OSSL_DISPATCH kEcTextEncoderFunctions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx<Format::kText>)},
    {OSSL_FUNC_ENCODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},
    {OSSL_FUNC_ENCODER_DOES_SELECTION, reinterpret_cast<void (*)()>(TextDoesSelection)},
    {OSSL_FUNC_ENCODER_ENCODE, reinterpret_cast<void (*)()>(Encode)},
    {0, nullptr},
};

}  // namespace wimse::provider
