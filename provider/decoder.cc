// DECODERS for "TSS2 PRIVATE KEY" files (provider-guide §7.3).
//
//   DER (input=pem)                 PEM block labelled TSS2 PRIVATE KEY -> DER, structure TSS2
//   EC, RSA, RSA-PSS (input=der,structure=TSS2)
//                                   TSS2 DER -> TPM key object reference (one decoder per key
//                                   type; the others stay empty-handed)
//
// Anything that is not ours leaves the decoder empty-handed (return 1, no callback, no error
// left on the queue): with the provider active process-wide, failing here would break loading
// every other key. Decoding does no TPM I/O; the TPM is first touched when the key signs.
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include <cstring>
#include <new>

#include "crypto/tpm_public.h"
#include "keyfile/auth_source.h"
#include "keyfile/tss2_key.h"
#include "provider/provider.h"

namespace wimse::provider {

namespace {

constexpr char kTss2PemLabel[] = "TSS2 PRIVATE KEY";
// Key files are a few hundred bytes; refuse to buffer more than this from one input.
constexpr size_t kMaxInput = 64 * 1024;

// Reads everything from the core BIO (bounded).
bool ReadAll(ProviderContext* prov, OSSL_CORE_BIO* cin, Bytes* out) {
  BioPtr bio(BIO_new_from_core_bio(prov->libctx, cin));
  if (!bio) {
    return false;
  }
  uint8_t buf[4096];
  for (;;) {
    int n = BIO_read(bio.get(), buf, sizeof(buf));
    if (n <= 0) {
      break;
    }
    out->insert(out->end(), buf, buf + n);
    if (out->size() > kMaxInput) {
      return false;
    }
  }
  return true;
}

struct DecoderCtx {
  ProviderContext* prov = nullptr;
};

void* NewCtx(void* provctx) noexcept {
  auto* ctx = new (std::nothrow) DecoderCtx();
  if (ctx != nullptr) {
    ctx->prov = static_cast<ProviderContext*>(provctx);
  }
  return ctx;
}

void FreeCtx(void* vctx) noexcept { delete static_cast<DecoderCtx*>(vctx); }

// Selection 0 means "anything"; otherwise we only produce keys (private or public part).
// A TSS2 file is a private key: decoders asked for public keys only (every certificate and
// SubjectPublicKeyInfo that libcrypto parses, twice per TLS handshake) are not ours. Declining
// here keeps our decoders out of those decoder chains: OpenSSL 3.0 builds a chain for every
// certificate it parses, and ours in it cost 10% of a TLS 1.3 handshake's instructions
// (callgrind, bench/key_bench tls with a software key and our provider loaded).
int DoesSelection(void* /*provctx*/, int selection) noexcept {
  return selection == 0 || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 ? 1 : 0;
}

int PemToDerDecode(void* vctx, OSSL_CORE_BIO* cin, int /*selection*/, OSSL_CALLBACK* data_cb,
                   void* data_cbarg, OSSL_PASSPHRASE_CALLBACK* /*pw_cb*/,
                   void* /*pw_cbarg*/) noexcept {
  auto* ctx = static_cast<DecoderCtx*>(vctx);
  try {
    BioPtr bio(BIO_new_from_core_bio(ctx->prov->libctx, cin));
    if (!bio) {
      return 0;
    }
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    ERR_set_mark();
    int ok = PEM_read_bio(bio.get(), &name, &header, &data, &len);
    ERR_pop_to_mark();  // "no start line" on non-PEM input is not an error for us
    if (ok != 1) {
      return 1;
    }
    int ret = 1;
    if (std::strcmp(name, kTss2PemLabel) == 0) {
      char structure[] = "TSS2";
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, data, static_cast<size_t>(len)),
          OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, structure, 0),
          OSSL_PARAM_construct_end(),
      };
      ret = data_cb(params, data_cbarg);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, static_cast<size_t>(len));
    return ret;
  } catch (...) {
    return 0;
  }
}

template <KeyType T>
int DerToKeyDecode(void* vctx, OSSL_CORE_BIO* cin, int /*selection*/, OSSL_CALLBACK* data_cb,
                   void* data_cbarg, OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg) noexcept {
  auto* ctx = static_cast<DecoderCtx*>(vctx);
  try {
    Bytes der;
    ERR_set_mark();
    bool read_ok = ReadAll(ctx->prov, cin, &der);
    ERR_pop_to_mark();
    if (!read_ok) {
      return 1;  // not something we could have made
    }
    bool not_ours = false;
    std::unique_ptr<ProviderKey> key = DecodeTss2Key(ctx->prov, der, pw_cb, pw_cbarg, T, &not_ours);
    if (!key) {
      return not_ours ? 1 : 0;  // refusals were raised by DecodeTss2Key
    }
    return PassKeyReference(std::move(key), data_cb, data_cbarg);
  } catch (...) {
    return 0;
  }
}

}  // namespace

std::unique_ptr<ProviderKey> DecodeTss2Key(ProviderContext* prov, ByteView der,
                                           OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                           std::optional<KeyType> want, bool* not_ours) {
  *not_ours = false;
  ERR_set_mark();
  auto file = ParseTss2KeyDer(der);
  ERR_pop_to_mark();
  if (!file.ok()) {
    *not_ours = true;
    return nullptr;
  }
  return KeyFromTss2File(prov, std::move(file).value(), pw_cb, pw_cbarg, want, not_ours);
}

std::unique_ptr<ProviderKey> KeyFromTss2File(ProviderContext* prov, Tss2KeyFile file,
                                             OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                             std::optional<KeyType> want, bool* not_ours) {
  *not_ours = false;
  ERR_set_mark();
  auto pub = UnmarshalTpm2bPublic(file.public_blob);
  ERR_pop_to_mark();
  if (!pub.ok()) {
    *not_ours = true;
    return nullptr;
  }
  const TPMT_PUBLIC& area = pub->publicArea;
  KeyType type = KeyType::kEc;
  if (area.type == TPM2_ALG_RSA) {
    type = area.parameters.rsaDetail.scheme.scheme == TPM2_ALG_RSAPSS ? KeyType::kRsaPss
                                                                      : KeyType::kRsa;
  } else if (area.type != TPM2_ALG_ECC) {
    *not_ours = true;
    return nullptr;
  }
  if (want && *want != type) {
    // Another of our decoders (registered for the other key type) takes it.
    *not_ours = true;
    return nullptr;
  }
  int reason = kReasonCannotLoadKey;
  auto key = ProviderKey::FromKeyFile(prov, std::move(file), &reason);
  if (!key.ok()) {
    WIMSE_PROV_RAISE_ERROR(prov, reason, key.error());
    return nullptr;
  }
  if ((*key)->key->needs_auth() &&
      !ObtainKeyAuth(prov, (*key)->key.get(), "TSS2 key file", pw_cb, pw_cbarg,
                     /*defer_to_sign=*/true)) {
    return nullptr;
  }
  return std::move(key).value();
}

bool ObtainKeyAuth(ProviderContext* prov, tpm::WorkloadKey* key, const char* what,
                   OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg, bool defer_to_sign) {
  // emptyAuth FALSE or absent means "auth required", but tpm2-tools 5.4 writes an explicit
  // FALSE for password-less keys (tpm2-tools #3458), and tpm2-openssl and wimse-tpm write an
  // explicit FALSE for keys that have one. So for an explicit FALSE the pass phrase is asked
  // for, and an empty answer (or none) means empty auth, used at the first signature. Nothing
  // is tried against the TPM at load: a probe with empty auth would cost a dictionary-attack
  // strike on every load of a key that has an auth value. When the field is absent (the
  // draft's "auth required"; files of wimse-tpm before it wrote an explicit FALSE) an empty
  // answer is refused here, before the TPM could count a strike. Asked once; never retried.
  // Longer than any auth value (kMaxAuthValueSize) by far, so an over-long answer is refused
  // with its real length (WorkloadKey::CheckAuthUsable) rather than cut by the callback. It is
  // larger than OpenSSL's own pass-phrase buffers (apps read -passin file: into 1024 bytes): a
  // callback that fails with a longer answer is indistinguishable from one with no answer, and
  // for an emptyAuth FALSE key no answer means empty auth (tried once, see AuthLatch).
  char pass[4096];
  size_t pass_len = 0;
  OSSL_PARAM info[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, const_cast<char*>(what), 0),
      OSSL_PARAM_construct_end(),
  };
  bool answered = pw_cb != nullptr && pw_cb(pass, sizeof(pass), &pass_len, info, pw_cbarg) == 1;
  bool empty_refused = pass_len == 0 && key->auth_required_by_file();
  if (!answered && !key->auth_required_by_file()) {
    // Explicit FALSE and nobody to ask (an application without a pass-phrase callback):
    // empty auth, which the first signature sends once.
    OPENSSL_cleanse(pass, sizeof(pass));
    return true;
  }
  if (defer_to_sign && (!answered || empty_refused)) {
    OPENSSL_cleanse(pass, sizeof(pass));
    return true;  // no auth value set: the first signature says what is missing
  }
  if (!answered) {
    OPENSSL_cleanse(pass, sizeof(pass));
    WIMSE_PROV_RAISE(prov, kReasonAuthFailure,
                     "the %s requires an authorization value and none was supplied (for a "
                     "key without one, supply an empty passphrase)",
                     what);
    return false;
  }
  if (empty_refused) {
    OPENSSL_cleanse(pass, sizeof(pass));
    WIMSE_PROV_RAISE(prov, kReasonAuthFailure,
                     "the %s requires an authorization value (no emptyAuth field) and the "
                     "passphrase given was empty; nothing was sent to the TPM",
                     what);
    return false;
  }
  if (!defer_to_sign) {
    // Deferred keys keep the value and refuse it at their first signature with this error
    // (OpenSSL 3.0's decoder chain would print only "unsupported" for an error raised here).
    if (Status size = CheckAuthValueSize(pass_len); !size.ok()) {
      OPENSSL_cleanse(pass, sizeof(pass));
      WIMSE_PROV_RAISE_ERROR(prov, kReasonAuthFailure, size.error());
      return false;
    }
  }
  key->SetAuth(SecretBytes(ByteView(reinterpret_cast<const uint8_t*>(pass), pass_len)));
  OPENSSL_cleanse(pass, sizeof(pass));
  return true;
}

int PassKeyReference(std::unique_ptr<ProviderKey> key, OSSL_CALLBACK* cb, void* cbarg) {
  const char* type_name = key->type_name();
  KeyReference ref = key.release();
  int object_type = OSSL_OBJECT_PKEY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, const_cast<char*>(type_name),
                                       0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref)),
      OSSL_PARAM_construct_end(),
  };
  int ret = cb(params, cbarg);
  delete ref;  // null if keymgmt load took it
  return ret;
}

const OSSL_DISPATCH kTss2PemToDerDecoderFunctions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx)},
    {OSSL_FUNC_DECODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},
    {OSSL_FUNC_DECODER_DOES_SELECTION, reinterpret_cast<void (*)()>(DoesSelection)},
    {OSSL_FUNC_DECODER_DECODE, reinterpret_cast<void (*)()>(PemToDerDecode)},
    {0, nullptr},
};

#define WIMSE_DER_TO_KEY_DECODER(name, type)                                           \
  const OSSL_DISPATCH name[] = {                                                       \
      {OSSL_FUNC_DECODER_NEWCTX, reinterpret_cast<void (*)()>(NewCtx)},                \
      {OSSL_FUNC_DECODER_FREECTX, reinterpret_cast<void (*)()>(FreeCtx)},              \
      {OSSL_FUNC_DECODER_DOES_SELECTION, reinterpret_cast<void (*)()>(DoesSelection)}, \
      {OSSL_FUNC_DECODER_DECODE, reinterpret_cast<void (*)()>(DerToKeyDecode<type>)},  \
      {0, nullptr},                                                                    \
  }

WIMSE_DER_TO_KEY_DECODER(kTss2DerToEcDecoderFunctions, KeyType::kEc);
WIMSE_DER_TO_KEY_DECODER(kTss2DerToRsaDecoderFunctions, KeyType::kRsa);
WIMSE_DER_TO_KEY_DECODER(kTss2DerToRsaPssDecoderFunctions, KeyType::kRsaPss);

}  // namespace wimse::provider
