// wimsetpm: OpenSSL 3 provider entry point, base functions, reason strings, algorithm tables
// and error raising (provider-guide §2, §11).
//
// Registered: KEYMGMT EC/RSA/RSA-PSS, SIGNATURE ECDSA/RSA, DECODER TSS2 (PEM->DER, DER->key),
// ENCODER SPKI (DER, PEM), text and TSS2 (PrivateKeyInfo), STORE tpmkey and handle. Never
// DIGEST/CIPHER/RAND/KEYEXCH/KDF: anything generic would pull unrelated traffic (TLS
// transcript hashing, ECDHE) into the TPM. Key generation exists for `openssl genpkey
// -provider wimsetpm`; it is reached only when our keymgmt is chosen, which the documented
// configuration (default provider first, default_properties = ?provider=default) prevents for
// unqualified fetches such as libssl's ECDHE keys.
// OSSL_provider_init does no TPM I/O (tpm2-openssl #149); the first key use connects.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "provider/provider.h"
#include "tpm/auth_latch.h"

namespace wimse::provider {

namespace {

constexpr char kProviderDisplayName[] = "wimse-tpm TPM 2.0 workload key provider";

const OSSL_ITEM kReasonStrings[] = {
    {kReasonInternal, const_cast<char*>("internal error")},
    {kReasonCannotConnect, const_cast<char*>("cannot connect to the TPM")},
    {kReasonCannotLoadKey, const_cast<char*>("cannot load key")},
    {kReasonUnsupportedKey, const_cast<char*>("unsupported key")},
    {kReasonUnsupportedDigest, const_cast<char*>("unsupported digest")},
    {kReasonWrongDataLength, const_cast<char*>("wrong data length")},
    {kReasonBufferTooSmall, const_cast<char*>("output buffer too small")},
    {kReasonTpmFailure, const_cast<char*>("TPM command failed")},
    {kReasonPrivateExportRefused, const_cast<char*>("private key cannot leave the TPM")},
    {kReasonRestrictedKey,
     const_cast<char*>("restricted attestation key cannot sign external data")},
    {kReasonAuthNotSupported, const_cast<char*>("key authorization values are not supported")},
    {kReasonBadUri, const_cast<char*>("malformed TPM key URI")},
    {kReasonNotInitialized, const_cast<char*>("provider not initialized")},
    {kReasonIoError, const_cast<char*>("I/O error")},
    {kReasonUnsupportedScheme, const_cast<char*>("signature scheme not supported by this TPM key")},
    {kReasonPssSaltMismatch, const_cast<char*>("TPM cannot produce the requested PSS salt length")},
    {kReasonAuthFailure, const_cast<char*>("TPM key authorization failed")},
    {kReasonKeyGeneration, const_cast<char*>("cannot create key in the TPM")},
    {kReasonNoSuchHandle, const_cast<char*>("no such persistent handle in the TPM")},
    {kReasonWrongTpm, const_cast<char*>("key belongs to another TPM or storage primary")},
    {kReasonPublicKeyOnly,
     const_cast<char*>("public key only: it has no TPM part and cannot sign")},
    {kReasonPrivatePartNotExported,
     const_cast<char*>("private key cannot leave the TPM: the private key exists only inside "
                       "the TPM; only the public part can be exported (EVP_PKEY_PUBLIC_KEY)")},
    {kReasonPrivateImportRefused,
     const_cast<char*>("private keys cannot be imported into the TPM provider")},
    {kReasonOptionMismatch, const_cast<char*>("option does not apply to this key")},
    {kReasonPolicyOnlyKey,
     const_cast<char*>("key requires a policy session (userWithAuth clear); not supported")},
    {0, nullptr},
};

// Templates: the property strings here get "provider=<name>" prepended per provider instance
// (BuildAlgorithmTables). The core does NOT add that property implicitly (the default provider
// writes "provider=default" into its own tables): without it, `-propquery provider=wimsetpm`
// finds nothing and the child context's "provider!=wimsetpm" query would match our own
// algorithms, recursing into us.
const OSSL_ALGORITHM kKeymgmt[] = {
    {kEcNames, "", kEcKeymgmtFunctions, "TPM 2.0 EC key (wimse-tpm)"},
    {kRsaNames, "", kRsaKeymgmtFunctions, "TPM 2.0 RSA key (wimse-tpm)"},
    {kRsaPssNames, "", kRsaPssKeymgmtFunctions, "TPM 2.0 RSA key bound to PSS (wimse-tpm)"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kSignature[] = {
    {kEcdsaNames, "", kEcdsaSignatureFunctions, "ECDSA in the TPM (wimse-tpm)"},
    {kRsaNames, "", kRsaSignatureFunctions, "RSA PKCS#1 v1.5 and PSS in the TPM (wimse-tpm)"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kDecoder[] = {
    {"DER", "input=pem", kTss2PemToDerDecoderFunctions, "TSS2 PRIVATE KEY PEM to DER"},
    {kEcNames, "input=der,structure=TSS2", kTss2DerToEcDecoderFunctions,
     "TSS2 PRIVATE KEY DER to TPM EC key"},
    {kRsaNames, "input=der,structure=TSS2", kTss2DerToRsaDecoderFunctions,
     "TSS2 PRIVATE KEY DER to TPM RSA key"},
    {kRsaPssNames, "input=der,structure=TSS2", kTss2DerToRsaPssDecoderFunctions,
     "TSS2 PRIVATE KEY DER to TPM RSA-PSS key"},
    {nullptr, nullptr, nullptr, nullptr},
};

#define WIMSE_KEY_ENCODERS(names, what)                                              \
  {names, "output=der,structure=SubjectPublicKeyInfo", kSpkiDerEncoderFunctions,     \
   "TPM " what " public key to SubjectPublicKeyInfo DER"},                           \
      {names, "output=pem,structure=SubjectPublicKeyInfo", kSpkiPemEncoderFunctions, \
       "TPM " what " public key to SubjectPublicKeyInfo PEM"},                       \
      {names, "output=text", kTextEncoderFunctions, "TPM " what " key as text"},     \
      {names, "output=der,structure=PrivateKeyInfo", kTss2DerEncoderFunctions,       \
       "TPM " what " key to its TSS2 PRIVATE KEY file (DER)"},                       \
  {                                                                                  \
    names, "output=pem,structure=PrivateKeyInfo", kTss2PemEncoderFunctions,          \
        "TPM " what " key to its TSS2 PRIVATE KEY file (PEM)"                        \
  }

const OSSL_ALGORITHM kEncoder[] = {
    WIMSE_KEY_ENCODERS(kEcNames, "EC"),
    WIMSE_KEY_ENCODERS(kRsaNames, "RSA"),
    WIMSE_KEY_ENCODERS(kRsaPssNames, "RSA-PSS"),
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kStore[] = {
    {kStoreScheme, "", kTpmKeyStoreFunctions,
     "TPM keys: tpmkey:file=<path>, tpmkey:handle=0x81xxxxxx"},
    {kHandleScheme, "", kTpmKeyStoreFunctions, "persistent TPM keys: handle:0x81xxxxxx"},
    {nullptr, nullptr, nullptr, nullptr},
};

// Custom provider parameters (OSSL_PROVIDER_get_params) counting private-key operations that
// reached the TPM.
constexpr char kParamSignatures[] = "tpm-signatures";
constexpr char kParamKeygens[] = "tpm-keygens";

const OSSL_PARAM kGettableParams[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, nullptr, 0),
    OSSL_PARAM_DEFN(kParamSignatures, OSSL_PARAM_UNSIGNED_INTEGER, nullptr, 0),
    OSSL_PARAM_DEFN(kParamKeygens, OSSL_PARAM_UNSIGNED_INTEGER, nullptr, 0),
    OSSL_PARAM_END,
};

void Teardown(void* provctx) noexcept {
  auto* prov = static_cast<ProviderContext*>(provctx);
  if (prov == nullptr) {
    return;
  }
  std::shared_ptr<tpm::TpmContext> tpm;
  {
    std::lock_guard<std::mutex> lock(prov->mu);
    tpm = std::move(prov->tpm);
  }
  if (tpm) {
    // Leave no transient objects behind; tolerant of a TPM that already went away. Dropping
    // the last reference finalizes ESYS and closes the TCTI.
    tpm->FlushCache();
    tpm.reset();
  }
  {
    // The cached digests belong to the library contexts freed below: drop them first.
    std::lock_guard<std::mutex> lock(prov->digests.mu);
    for (auto& e : prov->digests.entries) EVP_MD_free(e.second);
    prov->digests.entries.clear();
  }
  OSSL_LIB_CTX_free(prov->libctx);
  if (prov->swdefault != nullptr) {
    OSSL_PROVIDER_unload(prov->swdefault);
  }
  OSSL_LIB_CTX_free(prov->swctx);
  delete prov;
}

const OSSL_PARAM* GettableParams(void* /*provctx*/) noexcept { return kGettableParams; }

int GetParams(void* provctx, OSSL_PARAM params[]) noexcept {
  const auto* prov = static_cast<const ProviderContext*>(provctx);
  OSSL_PARAM* p = OSSL_PARAM_locate(params, kParamSignatures);
  if (p != nullptr && OSSL_PARAM_set_uint64(p, prov->signatures.load()) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, kParamKeygens);
  if (p != nullptr && OSSL_PARAM_set_uint64(p, prov->keygens.load()) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
  if (p != nullptr && OSSL_PARAM_set_utf8_ptr(p, kProviderDisplayName) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
  if (p != nullptr && OSSL_PARAM_set_utf8_ptr(p, WIMSE_TPM_VERSION) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
  if (p != nullptr && OSSL_PARAM_set_utf8_ptr(p, "wimse-tpm " WIMSE_TPM_VERSION) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
  if (p != nullptr && OSSL_PARAM_set_int(p, 1) != 1) {
    return 0;
  }
  return 1;
}

const OSSL_ALGORITHM* QueryOperation(void* provctx, int operation_id, int* no_cache) noexcept {
  const auto* prov = static_cast<const ProviderContext*>(provctx);
  *no_cache = 0;
  for (const auto& table : prov->algorithms) {
    if (table.operation_id == operation_id) {
      return table.algorithms.data();
    }
  }
  return nullptr;
}

// Copies the template tables with "provider=<name>" added to every property definition.
void BuildAlgorithmTables(ProviderContext* prov) {
  const std::pair<int, const OSSL_ALGORITHM*> templates[] = {
      {OSSL_OP_KEYMGMT, kKeymgmt}, {OSSL_OP_SIGNATURE, kSignature}, {OSSL_OP_DECODER, kDecoder},
      {OSSL_OP_ENCODER, kEncoder}, {OSSL_OP_STORE, kStore},
  };
  for (const auto& [op, algs] : templates) {
    ProviderContext::AlgorithmTable table;
    table.operation_id = op;
    for (const OSSL_ALGORITHM* a = algs; a->algorithm_names != nullptr; ++a) {
      std::string props = "provider=" + prov->name;
      if (a->property_definition != nullptr && a->property_definition[0] != '\0') {
        props += ",";
        props += a->property_definition;
      }
      prov->property_strings.push_back(std::move(props));
      OSSL_ALGORITHM copy = *a;
      copy.property_definition = prov->property_strings.back().c_str();
      table.algorithms.push_back(copy);
    }
    table.algorithms.push_back({nullptr, nullptr, nullptr, nullptr});
    prov->algorithms.push_back(std::move(table));
  }
}

const OSSL_ITEM* GetReasonStrings(void* /*provctx*/) noexcept { return kReasonStrings; }

// libssl's SSL_CTX_new asks every provider for TLS-GROUP (and, on 3.2+, TLS-SIGALG); a 0
// return fails SSL_CTX_new on 3.0 (guide §2). We advertise nothing and succeed.
int GetCapabilities(void* /*provctx*/, const char* /*capability*/, OSSL_CALLBACK* /*cb*/,
                    void* /*arg*/) noexcept {
  return 1;
}

const OSSL_DISPATCH kProviderFunctions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, reinterpret_cast<void (*)()>(Teardown)},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, reinterpret_cast<void (*)()>(GettableParams)},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, reinterpret_cast<void (*)()>(GetParams)},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, reinterpret_cast<void (*)()>(QueryOperation)},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, reinterpret_cast<void (*)()>(GetReasonStrings)},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, reinterpret_cast<void (*)()>(GetCapabilities)},
    {0, nullptr},
};

int Init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
         void** provctx) {
  // tpm2-tss logs warnings and errors to stderr by default; every failure we report already
  // carries the decoded response code on OpenSSL's error queue, so its lines only interleave
  // with the application's output. An application (or user) that set TSS2_LOG keeps its value.
  setenv("TSS2_LOG", "all+none", /*overwrite=*/0);
  // The process tree's auth latch (tpm/auth_latch.h), made now so that workers a server forks
  // after loading its configuration share it even if each decodes its key itself.
  tpm::AuthLatch::Global();
  auto prov = std::unique_ptr<ProviderContext>(new (std::nothrow) ProviderContext());
  if (!prov) {
    return 0;
  }
  prov->handle = handle;
  OSSL_FUNC_core_get_params_fn* core_get_params = nullptr;
  for (const OSSL_DISPATCH* d = in; d != nullptr && d->function_id != 0; ++d) {
    switch (d->function_id) {
      case OSSL_FUNC_CORE_GET_PARAMS:
        core_get_params = OSSL_FUNC_core_get_params(d);
        break;
      case OSSL_FUNC_CORE_NEW_ERROR:
        prov->core_new_error = OSSL_FUNC_core_new_error(d);
        break;
      case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
        prov->core_set_error_debug = OSSL_FUNC_core_set_error_debug(d);
        break;
      case OSSL_FUNC_CORE_VSET_ERROR:
        prov->core_vset_error = OSSL_FUNC_core_vset_error(d);
        break;
      default:
        break;
    }
  }

  // Configuration from the provider's openssl.cnf section; all optional.
  const char* tcti_param = nullptr;
  const char* name_param = nullptr;
  if (core_get_params != nullptr) {
    OSSL_PARAM core_params[] = {
        OSSL_PARAM_utf8_ptr("tcti", const_cast<char**>(&tcti_param), 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_CORE_PROV_NAME, const_cast<char**>(&name_param), 0),
        OSSL_PARAM_END,
    };
    if (core_get_params(handle, core_params) != 1) {
      tcti_param = nullptr;
      name_param = nullptr;
    }
  }
  prov->name = name_param != nullptr && name_param[0] != '\0' ? name_param : "wimsetpm";
  prov->fetch_propq = "provider!=" + prov->name;
  BuildAlgorithmTables(prov.get());
  prov->tcti = tpm::ResolveTcti(tcti_param != nullptr ? tcti_param : "");

  prov->libctx = OSSL_LIB_CTX_new_child(handle, in);
  if (prov->libctx == nullptr) {
    return 0;
  }
  // Our own software context: not a child, so it has the default provider even when the
  // application loaded only us (no configuration is read into it).
  prov->swctx = OSSL_LIB_CTX_new();
  if (prov->swctx == nullptr) {
    OSSL_LIB_CTX_free(prov->libctx);
    return 0;
  }
  prov->swdefault = OSSL_PROVIDER_load(prov->swctx, "default");
  if (prov->swdefault == nullptr) {
    OSSL_LIB_CTX_free(prov->swctx);
    OSSL_LIB_CTX_free(prov->libctx);
    return 0;
  }
  *out = kProviderFunctions;
  *provctx = prov.release();
  return 1;
}

}  // namespace

std::shared_ptr<tpm::TpmContext> ProviderContext::Tpm() {
  std::lock_guard<std::mutex> lock(mu);
  if (!tpm) {
    // One context per provider instance rather than tpm::SharedContext: teardown must be able
    // to finalize ESYS and close the TCTI (guide §2), and the shared map lives until exit.
    // Keys hold a reference, so the connection closes when the last key and the provider are
    // gone; in practice OpenSSL frees keys before it tears the provider down.
    tpm = std::make_shared<tpm::TpmContext>(tcti);
  }
  return tpm;
}

SoftwareCtxScope::SoftwareCtxScope(const ProviderContext* prov) {
  if (prov != nullptr && prov->swctx != nullptr) {
    previous_ = OSSL_LIB_CTX_set0_default(prov->swctx);
  }
}

SoftwareCtxScope::~SoftwareCtxScope() {
  if (previous_ != nullptr) {
    OSSL_LIB_CTX_set0_default(previous_);
  }
}

namespace {
void RaiseVa(const ProviderContext* prov, int reason, const char* file, int line, const char* func,
             const char* fmt, va_list args) {
  if (prov == nullptr || prov->core_new_error == nullptr || prov->core_set_error_debug == nullptr ||
      prov->core_vset_error == nullptr) {
    return;
  }
  prov->core_new_error(prov->handle);
  prov->core_set_error_debug(prov->handle, file, line, func);
  prov->core_vset_error(prov->handle, static_cast<uint32_t>(reason), fmt, args);
}

// Variadic only to obtain a va_list for RaiseReason (which has no arguments to format).
void RaiseNoFormat(const ProviderContext* prov, int reason, const char* file, int line,
                   const char* func, ...) {
  va_list args;
  va_start(args, func);
  RaiseVa(prov, reason, file, line, func, nullptr, args);
  va_end(args);
}
}  // namespace

void RaiseReason(const ProviderContext* prov, int reason, const char* file, int line,
                 const char* func) {
  RaiseNoFormat(prov, reason, file, line, func);  // no detail: nothing is formatted
}

void RaiseError(const ProviderContext* prov, int reason, const char* file, int line,
                const char* func, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  RaiseVa(prov, reason, file, line, func, fmt, args);
  va_end(args);
}

int ReasonForError(const Error& error, int fallback) {
  if (error.layer() == Layer::kTcti) {
    return kReasonCannotConnect;
  }
  uint32_t rc = error.tss2_rc();
  if (error.layer() != Layer::kTpm || rc == 0 || (rc & 0xff0000) != 0) {
    return fallback;
  }
  if ((rc & 0x80) != 0) {
    // Format-one codes (TPM 2.0 Part 2, 6.6.3): the low 6 bits name the error, the rest say
    // which handle/parameter/session it refers to.
    switch (0x80 | (rc & 0x3f)) {
      case 0x9f:  // TPM_RC_INTEGRITY: the blob was wrapped by another TPM or parent
        return kReasonWrongTpm;
      case 0x8e:  // TPM_RC_AUTH_FAIL
      case 0xa2:  // TPM_RC_BAD_AUTH
        return kReasonAuthFailure;
      case 0x8b:  // TPM_RC_HANDLE
        return kReasonNoSuchHandle;
      default:
        return fallback;
    }
  }
  if ((rc & 0xfff) == 0x921) {  // TPM_RC_LOCKOUT (dictionary-attack lockout)
    return kReasonAuthFailure;
  }
  return fallback;
}

void RaiseResultError(const ProviderContext* prov, int reason, const Error& error, const char* file,
                      int line, const char* func) {
  std::string text;
  try {
    text = error.ToString();
  } catch (...) {
    text = "(error text unavailable)";
  }
  RaiseError(prov, reason, file, line, func, "%s", text.c_str());
}

}  // namespace wimse::provider

// The only exported symbol (provider.map). Declared in <openssl/core.h> without noexcept;
// the body catches everything so nothing crosses the C ABI.
extern "C" __attribute__((visibility("default"))) int OSSL_provider_init(
    const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
    void** provctx) {
  try {
    return wimse::provider::Init(handle, in, out, provctx);
  } catch (...) {
    return 0;
  }
}
