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
#include <openssl/evp.h>

#include <atomic>
#include <cstdarg>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
  kReasonUnsupportedScheme = 15,
  kReasonPssSaltMismatch = 16,
  kReasonAuthFailure = 17,
  kReasonKeyGeneration = 18,
  kReasonNoSuchHandle = 19,
  kReasonWrongTpm = 20,
  kReasonPublicKeyOnly = 21,
  kReasonPrivateImportRefused = 22,
  kReasonOptionMismatch = 23,
  kReasonPolicyOnlyKey = 24,
  kReasonPrivatePartNotExported = 25,  // the whole text in the reason: raised unformatted
};

// Per-provider-instance state (the provctx). Created in OSSL_provider_init, freed in teardown.
// Immutable after init except for the lazily created TPM context (guarded by `mu`).
struct ProviderContext {
  const OSSL_CORE_HANDLE* handle = nullptr;
  // Child library context (OSSL_LIB_CTX_new_child): mirrors the application's providers so
  // software digests follow its configuration (FIPS included). Owned.
  OSSL_LIB_CTX* libctx = nullptr;
  // A private library context with the default provider loaded (owned, never a child): the
  // software work of src/ (building EVP_PKEYs of public keys, the PSS salt self-check, ESAPI's
  // session crypto) runs here when the application's context has no default provider, e.g.
  // `openssl genpkey -provider wimsetpm` alone. See SoftwareCtxScope.
  OSSL_LIB_CTX* swctx = nullptr;
  OSSL_PROVIDER* swdefault = nullptr;
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

  // Digests fetched for signature contexts, by the name asked for. EVP_MD_fetch parses its
  // property query and resolves the name on every call, about a tenth of the client CPU of a
  // provider signature; TLS and EVP_DigestSignInit make a new context per signature. Each
  // entry holds one reference, dropped with the provider context. Bounded (names are few).
  struct DigestCache {
    std::mutex mu;
    std::vector<std::pair<std::string, EVP_MD*>> entries;  // guarded by mu
    DigestCache() = default;
    DigestCache(const DigestCache&) = delete;
    DigestCache& operator=(const DigestCache&) = delete;
    ~DigestCache() {
      for (auto& e : entries) EVP_MD_free(e.second);
    }
  } digests;

  // Private-key operations that reached the TPM (signatures made, keys generated), readable
  // through OSSL_PROVIDER_get_params as "tpm-signatures" / "tpm-keygens": lets tests prove
  // that a TLS handshake sends exactly one operation to the TPM and nothing else.
  std::atomic<uint64_t> signatures{0};
  std::atomic<uint64_t> keygens{0};

  // The algorithm tables handed to the core (query_operation), with "provider=<name>" in every
  // property definition. Built once in OSSL_provider_init; immutable afterwards.
  struct AlgorithmTable {
    int operation_id = 0;
    std::vector<OSSL_ALGORITHM> algorithms;  // terminated by an all-null entry
  };
  std::vector<AlgorithmTable> algorithms;
  std::deque<std::string> property_strings;  // stable storage for property_definition
};

// While alive, makes `prov->swctx` the calling thread's default library context
// (OSSL_LIB_CTX_set0_default is per thread in OpenSSL 3), so src/ code that uses the NULL
// library context finds the default provider whatever the application loaded; restores the
// previous default on destruction. Wraps every call from the provider into src/ that may do
// software crypto (key construction, signing, generation). Not copyable.
class SoftwareCtxScope {
 public:
  explicit SoftwareCtxScope(const struct ProviderContext* prov);
  ~SoftwareCtxScope();
  SoftwareCtxScope(const SoftwareCtxScope&) = delete;
  SoftwareCtxScope& operator=(const SoftwareCtxScope&) = delete;

 private:
  OSSL_LIB_CTX* previous_ = nullptr;
};

// Raises `reason` with a printf-style detail through the core. Never throws.
void RaiseError(const ProviderContext* prov, int reason, const char* file, int line,
                const char* func, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
// Raises `reason` with no detail text (nothing formatted: for errors on hot paths).
void RaiseReason(const ProviderContext* prov, int reason, const char* file, int line,
                 const char* func);
// Raises `reason` with the text of `error` (layer, message, decoded TSS2_RC).
void RaiseResultError(const ProviderContext* prov, int reason, const Error& error, const char* file,
                      int line, const char* func);

#define WIMSE_PROV_RAISE(prov, reason, ...) \
  ::wimse::provider::RaiseError((prov), (reason), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define WIMSE_PROV_RAISE_ERROR(prov, reason, error) \
  ::wimse::provider::RaiseResultError((prov), (reason), (error), __FILE__, __LINE__, __func__)

// The OpenSSL key type a TPM key is presented as. RSA keys whose public area fixes the RSAPSS
// scheme are "RSA-PSS" (provider-guide §5.6, as tpm2-openssl does); other RSA keys are "RSA".
enum class KeyType { kEc, kRsa, kRsaPss };

// A TPM-backed key as OpenSSL sees it (the keymgmt keydata). Immutable once built and cheap to
// copy: the WorkloadKey and the software public key are shared by every copy (keymgmt dup,
// signature contexts, threads).
struct ProviderKey {
  ProviderContext* prov = nullptr;
  // The TPM key; null for a public key imported through keymgmt import (EVP_PKEY_eq with a
  // software key, EVP_PKEY_fromdata): such a key verifies in software and refuses to sign.
  std::shared_ptr<tpm::WorkloadKey> key;
  KeyAlg alg = KeyAlg::kEcP256;
  KeyType type = KeyType::kEc;
  Bytes point;    // EC: uncompressed 04 || X || Y, each coordinate padded to the field size
  Bytes modulus;  // RSA: n, big-endian, exactly keyBits/8 bytes
  uint32_t exponent = 65537;       // RSA: e (the TPM's 0 means 65537)
  uint32_t parent = 0;             // parent handle from the key file (0 for persistent keys)
  uint32_t persistent_handle = 0;  // 0x81xxxxxx for handle: keys, else 0
  // The scheme fixed in the TPM public area (TPM2_ALG_NULL when the key signs with any) and,
  // when fixed, its hash: requests for another scheme or hash are refused before the TPM is
  // asked (tpm2-openssl #55).
  uint16_t fixed_scheme = 0x0010;  // TPM2_ALG_NULL
  std::optional<HashAlg> fixed_hash;
  // The public key as a software EVP_PKEY in the provider's child library context (built from
  // the public export, default provider): software verification and the PSS salt self-check.
  std::shared_ptr<EVP_PKEY> software_public;
  // The library context and property query software_public lives in: the provider's child
  // context (excluding us), or swctx when the application has no default provider.
  OSSL_LIB_CTX* software_libctx = nullptr;
  std::string software_propq;
  // False only for an empty keydata from keymgmt new() before import.
  bool has_public = true;

  // Builds the keydata for a TSS2 key file. Refuses (with a reason) anything the provider
  // cannot sign with: curves other than P-256/P-384, RSA other than 2048/3072, restricted keys
  // (C05: attestation keys cannot sign external data), keys without the sign attribute.
  // No TPM I/O.
  static Result<std::unique_ptr<ProviderKey>> FromKeyFile(ProviderContext* prov, Tss2KeyFile file,
                                                          int* reason);
  // Builds software_public (child context first, then swctx). Raises nothing.
  void BuildSoftwarePublic();
  // Same for an already opened WorkloadKey (persistent keys, keys made by keymgmt gen).
  static Result<std::unique_ptr<ProviderKey>> FromWorkloadKey(ProviderContext* prov,
                                                              std::shared_ptr<tpm::WorkloadKey> key,
                                                              int* reason);

  bool is_rsa() const { return type != KeyType::kEc; }
  // "EC", "RSA" or "RSA-PSS": the OSSL_OBJECT_PARAM_DATA_TYPE and keymgmt name.
  const char* type_name() const;
  size_t field_size() const;
  int bits() const;
  int security_bits() const;
  // Largest signature: DER ECDSA-Sig-Value (72 for P-256, 104 for P-384), or the RSA modulus
  // size (tpm2-openssl #135: must be exact for RSA).
  size_t max_signature_size() const;
  HashAlg default_hash() const;
  // EC only: "prime256v1" / "secp384r1".
  const char* group_name() const;
  // True when both describe the same public key.
  bool SamePublicKey(const ProviderKey& other) const;
};

// The TPM key object handed through OSSL_OBJECT_PARAM_REFERENCE from decoders and the store
// to keymgmt load: a pointer to a heap ProviderKey. Load takes ownership and nulls the
// caller's pointer; whoever still holds a non-null pointer afterwards deletes it.
using KeyReference = ProviderKey*;

// Parses TSS2 DER and builds a key, asking `pw_cb` when the file says auth is required
// (ObtainKeyAuth: an explicit emptyAuth FALSE, which tpm2-tools #3458 writes for password-less
// keys, is first tried with empty auth). Returns nullptr with *not_ours true when the input is not
// a TSS2 key at all (caller stays empty-handed), or nullptr with an error raised when it is a TSS2
// key we refuse. `want` restricts the key type (decoders are registered per type); nullopt accepts
// any.
std::unique_ptr<ProviderKey> DecodeTss2Key(ProviderContext* prov, ByteView der,
                                           OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                           std::optional<KeyType> want, bool* not_ours);

// Same for an already parsed key file (the store reads PEM or DER files itself).
std::unique_ptr<ProviderKey> KeyFromTss2File(ProviderContext* prov, Tss2KeyFile file,
                                             OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg,
                                             std::optional<KeyType> want, bool* not_ours);

// Asks `pw_cb` for the key's authorization value (one prompt, never retried: failed auth
// counts towards the TPM's dictionary-attack lockout) and sets it on the key. An empty answer
// means empty auth. For a key file with an explicit emptyAuth FALSE (tpm2-tools 5.4 writes it
// for keys without auth; tpm2-openssl and wimse-tpm for keys with one) a callback that cannot
// answer also means empty auth; nothing is sent to the TPM here (a probe would cost a
// dictionary-attack strike per load of a key with auth). When no callback can answer a key
// whose file has no emptyAuth field (or the answer is empty for it): with `defer_to_sign` the key
// loads without an auth value and its first signature fails before any TPM command with the
// reason (WorkloadKey::CheckAuthUsable; OpenSSL 3.0's decoder chain discards errors raised
// inside a decoder and printed only "unsupported"), and its public part stays usable;
// otherwise returns false with the error raised. An answer longer than the TPM accepts is
// refused the same way, without a TPM command.
bool ObtainKeyAuth(ProviderContext* prov, tpm::WorkloadKey* key, const char* what,
                   OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg, bool defer_to_sign = false);

// Calls an OSSL_CALLBACK with the object parameters for `key` (OSSL_OBJECT_PKEY, data type,
// reference). Ownership goes to keymgmt load if the callback loads it; otherwise freed here.
int PassKeyReference(std::unique_ptr<ProviderKey> key, OSSL_CALLBACK* cb, void* cbarg);

// The public part of `key` as OSSL_PARAMs (EC group + point, RSA n + e) for `selection`, passed
// to `cb`. Never includes private material (there is none outside the TPM).
int ExportPublic(const ProviderKey& key, int selection, OSSL_CALLBACK* cb, void* cbarg);

// Maps a TPM/TCTI error to the reason an operator should see.
int ReasonForError(const Error& error, int fallback);

// SubjectPublicKeyInfo DER for the key (RFC 5480, named curve, uncompressed point).
Result<Bytes> SubjectPublicKeyInfoDer(const ProviderKey& key);

// Dispatch tables (defined in the operation files).
extern const OSSL_DISPATCH kEcKeymgmtFunctions[];
extern const OSSL_DISPATCH kRsaKeymgmtFunctions[];
extern const OSSL_DISPATCH kRsaPssKeymgmtFunctions[];
extern const OSSL_DISPATCH kEcdsaSignatureFunctions[];
extern const OSSL_DISPATCH kRsaSignatureFunctions[];
extern const OSSL_DISPATCH kTss2PemToDerDecoderFunctions[];
extern const OSSL_DISPATCH kTss2DerToEcDecoderFunctions[];
extern const OSSL_DISPATCH kTss2DerToRsaDecoderFunctions[];
extern const OSSL_DISPATCH kTss2DerToRsaPssDecoderFunctions[];
extern const OSSL_DISPATCH kSpkiDerEncoderFunctions[];
extern const OSSL_DISPATCH kSpkiPemEncoderFunctions[];
extern const OSSL_DISPATCH kTextEncoderFunctions[];
extern const OSSL_DISPATCH kTss2DerEncoderFunctions[];
extern const OSSL_DISPATCH kTss2PemEncoderFunctions[];
extern const OSSL_DISPATCH kTpmKeyStoreFunctions[];

// Algorithm names, identical to the default provider's so EVP_PKEY_is_a and cross-provider
// matching see the same type (libssl's ssl_cert_lookup_by_pkey tests these aliases).
inline constexpr char kEcNames[] = "EC:id-ecPublicKey:1.2.840.10045.2.1";
inline constexpr char kRsaNames[] = "RSA:rsaEncryption:1.2.840.113549.1.1.1";
inline constexpr char kRsaPssNames[] = "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10";
inline constexpr char kEcdsaNames[] = "ECDSA";
// URI schemes of the store: tpmkey:file=<path>, tpmkey:handle=0x81..., handle:0x81....
inline constexpr char kStoreScheme[] = "tpmkey";
inline constexpr char kHandleScheme[] = "handle";

}  // namespace wimse::provider

#endif  // WIMSE_PROVIDER_PROVIDER_H_
