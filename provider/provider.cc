// wimsetpm: OpenSSL 3 provider entry point, base functions, reason strings, algorithm tables
// and error raising (provider-guide §2, §11).
//
// Registered: KEYMGMT EC, SIGNATURE ECDSA, DECODER TSS2 (PEM->DER, DER->EC), ENCODER EC SPKI
// (DER, PEM) and text, STORE tpmkey. Never DIGEST/CIPHER/RAND/KEYEXCH/KDF or key generation:
// anything generic would pull unrelated traffic (TLS transcript hashing, ECDHE) into the TPM.
// OSSL_provider_init does no TPM I/O (tpm2-openssl #149); the first signature connects.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "provider/provider.h"

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
    {kReasonPrivateExportRefused,
     const_cast<char*>("private key cannot leave the TPM")},
    {kReasonRestrictedKey,
     const_cast<char*>("restricted attestation key cannot sign external data")},
    {kReasonAuthNotSupported, const_cast<char*>("key authorization values are not supported")},
    {kReasonBadUri, const_cast<char*>("malformed tpmkey URI")},
    {kReasonNotInitialized, const_cast<char*>("provider not initialized")},
    {kReasonIoError, const_cast<char*>("I/O error")},
    {0, nullptr},
};

// Empty property strings: the core adds provider=<name> implicitly, and nothing in our design
// needs a property to select us (key-bound operations follow the key, guide §3).
const OSSL_ALGORITHM kKeymgmt[] = {
    {kEcNames, "", kEcKeymgmtFunctions, "TPM 2.0 EC key (wimse-tpm)"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kSignature[] = {
    {kEcdsaNames, "", kEcdsaSignatureFunctions, "ECDSA in the TPM (wimse-tpm)"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kDecoder[] = {
    {"DER", "input=pem", kTss2PemToDerDecoderFunctions, "TSS2 PRIVATE KEY PEM to DER"},
    {kEcNames, "input=der,structure=TSS2", kTss2DerToEcDecoderFunctions,
     "TSS2 PRIVATE KEY DER to TPM EC key"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kEncoder[] = {
    {kEcNames, "output=der,structure=SubjectPublicKeyInfo", kEcSpkiDerEncoderFunctions,
     "TPM EC public key to SubjectPublicKeyInfo DER"},
    {kEcNames, "output=pem,structure=SubjectPublicKeyInfo", kEcSpkiPemEncoderFunctions,
     "TPM EC public key to SubjectPublicKeyInfo PEM"},
    {kEcNames, "output=text", kEcTextEncoderFunctions, "TPM EC key as text"},
    {nullptr, nullptr, nullptr, nullptr},
};
const OSSL_ALGORITHM kStore[] = {
    {kStoreScheme, "", kTpmKeyStoreFunctions, "TSS2 key files: tpmkey:file=<path>"},
    {nullptr, nullptr, nullptr, nullptr},
};

const OSSL_PARAM kGettableParams[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, nullptr, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, nullptr, 0),
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
  OSSL_LIB_CTX_free(prov->libctx);
  delete prov;
}

const OSSL_PARAM* GettableParams(void* /*provctx*/) noexcept { return kGettableParams; }

int GetParams(void* /*provctx*/, OSSL_PARAM params[]) noexcept {
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
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

const OSSL_ALGORITHM* QueryOperation(void* /*provctx*/, int operation_id,
                                     int* no_cache) noexcept {
  *no_cache = 0;
  switch (operation_id) {
    case OSSL_OP_KEYMGMT:
      return kKeymgmt;
    case OSSL_OP_SIGNATURE:
      return kSignature;
    case OSSL_OP_DECODER:
      return kDecoder;
    case OSSL_OP_ENCODER:
      return kEncoder;
    case OSSL_OP_STORE:
      return kStore;
    default:
      return nullptr;
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
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_CORE_PROV_NAME, const_cast<char**>(&name_param),
                            0),
        OSSL_PARAM_END,
    };
    if (core_get_params(handle, core_params) != 1) {
      tcti_param = nullptr;
      name_param = nullptr;
    }
  }
  prov->name = name_param != nullptr && name_param[0] != '\0' ? name_param : "wimsetpm";
  prov->fetch_propq = "provider!=" + prov->name;
  prov->tcti = tpm::ResolveTcti(tcti_param != nullptr ? tcti_param : "");

  prov->libctx = OSSL_LIB_CTX_new_child(handle, in);
  if (prov->libctx == nullptr) {
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

void RaiseError(const ProviderContext* prov, int reason, const char* file, int line,
                const char* func, const char* fmt, ...) {
  if (prov == nullptr || prov->core_new_error == nullptr ||
      prov->core_set_error_debug == nullptr || prov->core_vset_error == nullptr) {
    return;
  }
  prov->core_new_error(prov->handle);
  prov->core_set_error_debug(prov->handle, file, line, func);
  va_list args;
  va_start(args, fmt);
  prov->core_vset_error(prov->handle, static_cast<uint32_t>(reason), fmt, args);
  va_end(args);
}

void RaiseResultError(const ProviderContext* prov, int reason, const Error& error,
                      const char* file, int line, const char* func) {
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
