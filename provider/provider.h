// Internal declarations shared by the wimsetpm provider's operation files (not installed).
//
// The provider is a thin C ABI over src/ (CONVENTIONS rule 1): every OpenSSL dispatch function
// is a noexcept trampoline that turns a Result<T> error into a core error upcall and returns
// 0/NULL. Nothing here talks to ESAPI directly; all TPM work goes through tpm::WorkloadKey and
// tpm::TpmContext, which own the lock and the fork handling.
#ifndef WIMSE_PROVIDER_PROVIDER_H_
#define WIMSE_PROVIDER_PROVIDER_H_

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include <cstdarg>
#include <memory>
#include <mutex>
#include <string>

#include "crypto/signer.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::provider {

// Reason codes raised through core_vset_error; the strings live in provider.cc
// (get_reason_strings). Values are stable: operators grep for them.
enum Reason : int {
  kReasonInternal = 1,
  kReasonCannotConnect = 2,
  kReasonCannotLoadKey = 3,
  kReasonUnsupportedKey = 4,
  kReasonUnsupportedDigest = 5,
  kReasonWrongDataLength = 6,
  kReasonBufferTooSmall = 7,
  kReasonTpmFailure = 8,
  kReasonPrivateExportRefused = 9,
  kReasonRestrictedKey = 10,
  kReasonAuthNotSupported = 11,
  kReasonBadUri = 12,
  kReasonNotInitialized = 13,
  kReasonIoError = 14,
};

// Per-provider-instance state (the provctx). Created in OSSL_provider_init, freed in teardown.
// Immutable after init except for the lazily created TPM context (guarded by `mu`).
struct ProviderContext {
  const OSSL_CORE_HANDLE* handle = nullptr;
  // Child library context (OSSL_LIB_CTX_new_child): mirrors the application's providers so
  // software digests follow its configuration (FIPS included). Owned.
  OSSL_LIB_CTX* libctx = nullptr;
  // The name this instance was loaded under ("wimsetpm" unless openssl.cnf renames it).
  std::string name;
  // Property query for every fetch made inside the provider: excludes this provider so a
  // fetch can never recurse into us.
  std::string fetch_propq;
  // TCTI resolved at init (config `tcti`, else $WIMSE_TPM_TCTI, else device:/dev/tpmrm0).
  std::string tcti;

  OSSL_FUNC_core_new_error_fn* core_new_error = nullptr;
  OSSL_FUNC_core_set_error_debug_fn* core_set_error_debug = nullptr;
  OSSL_FUNC_core_vset_error_fn* core_vset_error = nullptr;

  // Returns this instance's TPM context for `tcti`, creating it on first use (no TPM I/O: it
  // connects on the first Run()). Thread-safe.
  std::shared_ptr<tpm::TpmContext> Tpm();

  std::mutex mu;
  std::shared_ptr<tpm::TpmContext> tpm;  // guarded by mu
};

// Raises `reason` with a printf-style detail through the core. Never throws.
void RaiseError(const ProviderContext* prov, int reason, const char* file, int line,
                const char* func, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
// Raises `reason` with the text of `error` (layer, message, decoded TSS2_RC).
void RaiseResultError(const ProviderContext* prov, int reason, const Error& error,
                      const char* file, int line, const char* func);

#define WIMSE_PROV_RAISE(prov, reason, ...) \
  ::wimse::provider::RaiseError((prov), (reason), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define WIMSE_PROV_RAISE_ERROR(prov, reason, error)                                      \
  ::wimse::provider::RaiseResultError((prov), (reason), (error), __FILE__, __LINE__, \
                                      __func__)

// A TPM-backed key as OpenSSL sees it (the keymgmt keydata). Immutable once built and cheap to
// copy: the WorkloadKey is shared by every copy (keymgmt dup, signature contexts, threads).
struct ProviderKey {
  ProviderContext* prov = nullptr;
  std::shared_ptr<tpm::WorkloadKey> key;
  KeyAlg alg = KeyAlg::kEcP256;
  Bytes point;  // uncompressed 04 || X || Y, each coordinate padded to the field size
  uint32_t parent = 0;

  // Builds the keydata for a TSS2 key file. Refuses (with a reason) anything the provider
  // cannot sign with: non-ECC keys, curves other than P-256/P-384, restricted keys (C05:
  // attestation keys cannot sign external data), keys without the sign attribute.
  // No TPM I/O.
  static Result<std::unique_ptr<ProviderKey>> FromKeyFile(ProviderContext* prov,
                                                          Tss2KeyFile file, int* reason);

  size_t field_size() const;
  int bits() const;
  int security_bits() const;
  // Largest DER ECDSA-Sig-Value for the curve (72 for P-256, 104 for P-384).
  size_t max_signature_size() const;
  HashAlg default_hash() const;
  const char* group_name() const;
};

// The TPM key object handed through OSSL_OBJECT_PARAM_REFERENCE from decoders and the store
// to keymgmt load: a pointer to a heap ProviderKey. Load takes ownership and nulls the
// caller's pointer; whoever still holds a non-null pointer afterwards deletes it.
using KeyReference = ProviderKey*;

// Parses TSS2 DER and builds a key, asking `pw_cb` when the file says auth is required (an
// empty answer means empty auth, tpm2-tools #3458 writes emptyAuth FALSE for password-less
// keys). Returns nullptr with *reason set when the input is not a TSS2 key at all
// (`*not_ours` true: caller stays empty-handed) or is a TSS2 key we refuse.
std::unique_ptr<ProviderKey> DecodeTss2Key(ProviderContext* prov, ByteView der,
                                           OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                           bool* not_ours);

// Same for an already parsed key file (the store reads PEM or DER files itself).
std::unique_ptr<ProviderKey> KeyFromTss2File(ProviderContext* prov, Tss2KeyFile file,
                                             OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                             bool* not_ours);

// SubjectPublicKeyInfo DER for the key (RFC 5480, named curve, uncompressed point).
Result<Bytes> SubjectPublicKeyInfoDer(const ProviderKey& key);

// Dispatch tables (defined in the operation files).
extern const OSSL_DISPATCH kEcKeymgmtFunctions[];
extern const OSSL_DISPATCH kEcdsaSignatureFunctions[];
extern const OSSL_DISPATCH kTss2PemToDerDecoderFunctions[];
extern const OSSL_DISPATCH kTss2DerToEcDecoderFunctions[];
extern const OSSL_DISPATCH kEcSpkiDerEncoderFunctions[];
extern const OSSL_DISPATCH kEcSpkiPemEncoderFunctions[];
extern const OSSL_DISPATCH kEcTextEncoderFunctions[];
extern const OSSL_DISPATCH kTpmKeyStoreFunctions[];

// Algorithm names, identical to the default provider's so EVP_PKEY_is_a and cross-provider
// matching see the same type.
inline constexpr char kEcNames[] = "EC:id-ecPublicKey:1.2.840.10045.2.1";
inline constexpr char kEcdsaNames[] = "ECDSA";
// The store's URI scheme: tpmkey:file=<path>.
inline constexpr char kStoreScheme[] = "tpmkey";

}  // namespace wimse::provider

#endif  // WIMSE_PROVIDER_PROVIDER_H_
