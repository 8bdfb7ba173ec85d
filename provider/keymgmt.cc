// KEYMGMT "EC", "RSA" and "RSA-PSS" for TPM-held keys (provider-guide §4).
//
// Keys come from our decoders and store (load) and from key generation in the TPM (gen, for
// `openssl genpkey -provider wimsetpm`). new/import take the PUBLIC part only: EVP_PKEY_eq of a
// software key (a certificate's) with ours first exports the software key into our keymgmt,
// and without new() OpenSSL 3.0 leaves "evp_keymgmt_util_try_import: malloc failure" on the
// error queue for every such comparison (SSL_CTX_use_PrivateKey, X509_check_private_key). An
// imported key has no TPM part: it verifies in software (never TPM2_LoadExternal,
// tpm2-openssl #84/#113) and refuses to sign. Importing private material is refused with a
// reason. Export refuses every selection that asks for the private key: OpenSSL then cannot
// move signing into the default provider with a public-only copy ("missing private key",
// tpm2-openssl #22/#63).
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include <cstring>
#include <new>
#include <string_view>

#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/auth_source.h"
#include "provider/provider.h"

namespace wimse::provider {

const char* ProviderKey::type_name() const {
  switch (type) {
    case KeyType::kRsa:
      return "RSA";
    case KeyType::kRsaPss:
      return "RSA-PSS";
    case KeyType::kEc:
    default:
      return "EC";
  }
}

size_t ProviderKey::field_size() const { return is_rsa() ? 0 : CurveFieldSize(alg); }

int ProviderKey::bits() const {
  switch (alg) {
    case KeyAlg::kEcP384:
      return 384;
    case KeyAlg::kRsa2048:
      return 2048;
    case KeyAlg::kRsa3072:
      return 3072;
    case KeyAlg::kEcP256:
    default:
      return 256;
  }
}

int ProviderKey::security_bits() const {
  // NIST SP 800-57 Part 1 Table 2, as OpenSSL's EVP_PKEY_get_security_bits reports them.
  switch (alg) {
    case KeyAlg::kEcP384:
      return 192;
    case KeyAlg::kRsa2048:
      return 112;
    case KeyAlg::kRsa3072:
    case KeyAlg::kEcP256:
    default:
      return 128;
  }
}

size_t ProviderKey::max_signature_size() const {
  if (is_rsa()) {
    return modulus.size();
  }
  // SEQUENCE { INTEGER r, INTEGER s }, each INTEGER at most tag + length + sign byte + field:
  // P-256: 2 + 2 * 35 = 72, P-384: 2 + 2 * 51 = 104 (OpenSSL's ECDSA_size, tpm2-openssl #135).
  size_t integer = 2 + field_size() + 1;
  size_t body = 2 * integer;
  return (body < 128 ? 2 : 3) + body;
}

HashAlg ProviderKey::default_hash() const {
  if (fixed_hash) {
    return *fixed_hash;
  }
  return alg == KeyAlg::kEcP384 ? HashAlg::kSha384 : HashAlg::kSha256;
}

const char* ProviderKey::group_name() const { return is_rsa() ? "" : CurveGroupName(alg); }

bool ProviderKey::SamePublicKey(const ProviderKey& other) const {
  return alg == other.alg && point == other.point && modulus == other.modulus &&
         exponent == other.exponent;
}

Result<std::unique_ptr<ProviderKey>> ProviderKey::FromKeyFile(ProviderContext* prov,
                                                              Tss2KeyFile file, int* reason) {
  *reason = kReasonCannotLoadKey;
  SoftwareCtxScope software(prov);
  // Attributes are checked before WorkloadKey so each refusal gets its own reason.
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub2b, UnmarshalTpm2bPublic(file.public_blob));
  if ((pub2b.publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
    // C05: an attestation key must never sign data the TPM did not hash itself.
    *reason = kReasonRestrictedKey;
    return Error(Layer::kPolicy, "key has the restricted attribute (attestation key)");
  }
  if ((pub2b.publicArea.objectAttributes & TPMA_OBJECT_USERWITHAUTH) == 0) {
    // Policy-only key: TPM2_Sign would fail with TPM_RC_AUTH_UNAVAILABLE on every signature.
    *reason = kReasonPolicyOnlyKey;
    return Error(Layer::kPolicy, "the key's userWithAuth attribute is clear");
  }
  uint32_t parent = file.parent;
  auto wk = tpm::WorkloadKey::FromKeyFile(prov->Tpm(), std::move(file));
  if (!wk.ok()) {
    *reason = kReasonUnsupportedKey;
    return std::move(wk).error();
  }
  WIMSE_ASSIGN_OR_RETURN(auto key, FromWorkloadKey(prov, std::move(wk).value(), reason));
  key->parent = parent;
  return key;
}

namespace {

// A software copy of the public key in `libctx` with `propq` (the provider's child context
// excluding this provider, or swctx), so verification runs in the default provider.
Result<std::shared_ptr<EVP_PKEY>> MakeSoftwarePublic(const ProviderKey& key, OSSL_LIB_CTX* libctx,
                                                     const char* propq) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(libctx, key.is_rsa() ? "RSA" : "EC", propq));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_fromdata_init for the software public key");
  }
  OSSL_PARAM* params = nullptr;
  int ok = ExportPublic(
      key, OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS,
      [](const OSSL_PARAM p[], void* arg) -> int {
        *static_cast<OSSL_PARAM**>(arg) = OSSL_PARAM_dup(p);
        return *static_cast<OSSL_PARAM**>(arg) != nullptr ? 1 : 0;
      },
      &params);
  OsslParamPtr owned(params);
  if (ok != 1) {
    return Error(Layer::kInternal, "cannot export the public key");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return OpenSslError("EVP_PKEY_fromdata for the software public key");
  }
  return std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free);
}

}  // namespace

void ProviderKey::BuildSoftwarePublic() {
  // The application's configuration first (FIPS included); our own default provider when the
  // application has none (`openssl genpkey -provider wimsetpm` alone).
  ERR_set_mark();
  auto sw = MakeSoftwarePublic(*this, prov->libctx, prov->fetch_propq.c_str());
  if (sw.ok()) {
    software_libctx = prov->libctx;
    software_propq = prov->fetch_propq;
  } else {
    sw = MakeSoftwarePublic(*this, prov->swctx, nullptr);
    software_libctx = prov->swctx;
    software_propq.clear();
  }
  ERR_pop_to_mark();
  if (sw.ok()) {
    software_public = std::move(sw).value();
  } else {
    software_libctx = nullptr;
  }
}

Result<std::unique_ptr<ProviderKey>> ProviderKey::FromWorkloadKey(
    ProviderContext* prov, std::shared_ptr<tpm::WorkloadKey> wk, int* reason) {
  *reason = kReasonUnsupportedKey;
  SoftwareCtxScope software(prov);
  const TPMT_PUBLIC& pub = wk->public_area();
  if ((pub.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
    *reason = kReasonRestrictedKey;
    return Error(Layer::kPolicy, "key has the restricted attribute (attestation key)");
  }
  if ((pub.objectAttributes & TPMA_OBJECT_USERWITHAUTH) == 0) {
    *reason = kReasonPolicyOnlyKey;
    return Error(Layer::kPolicy, "the key's userWithAuth attribute is clear");
  }
  if ((pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0) {
    return Error(Layer::kPolicy, "key lacks the sign attribute");
  }
  auto key = std::make_unique<ProviderKey>();
  key->prov = prov;
  key->alg = wk->alg();
  key->persistent_handle = wk->persistent_handle();
  if (pub.type == TPM2_ALG_ECC) {
    if (key->alg != KeyAlg::kEcP256 && key->alg != KeyAlg::kEcP384) {
      return Error(Layer::kPolicy, "only NIST P-256 and P-384 keys are supported");
    }
    const TPMT_ECC_SCHEME& scheme = pub.parameters.eccDetail.scheme;
    if (scheme.scheme != TPM2_ALG_NULL && scheme.scheme != TPM2_ALG_ECDSA) {
      *reason = kReasonUnsupportedScheme;
      return Error(Layer::kPolicy, "key scheme is neither NULL nor ECDSA");
    }
    key->type = KeyType::kEc;
    key->fixed_scheme = scheme.scheme;
    if (scheme.scheme == TPM2_ALG_ECDSA) {
      WIMSE_ASSIGN_OR_RETURN(HashAlg h, HashAlgFromTpm(scheme.details.ecdsa.hashAlg));
      key->fixed_hash = h;
    }
    size_t fs = key->field_size();
    const TPM2B_ECC_PARAMETER& x = pub.unique.ecc.x;
    const TPM2B_ECC_PARAMETER& y = pub.unique.ecc.y;
    if (x.size > fs || y.size > fs) {
      return Error(Layer::kParse, "EC coordinate wider than the curve field");
    }
    // TPMs may strip leading zeros from coordinates: always pad (tpm2-tools PR #1761).
    key->point.assign(1 + 2 * fs, 0);
    key->point[0] = 0x04;
    std::memcpy(key->point.data() + 1 + fs - x.size, x.buffer, x.size);
    std::memcpy(key->point.data() + 1 + 2 * fs - y.size, y.buffer, y.size);
  } else if (pub.type == TPM2_ALG_RSA) {
    if (key->alg != KeyAlg::kRsa2048 && key->alg != KeyAlg::kRsa3072) {
      return Error(Layer::kPolicy, "only RSA 2048 and 3072 keys are supported");
    }
    const TPMT_RSA_SCHEME& scheme = pub.parameters.rsaDetail.scheme;
    switch (scheme.scheme) {
      case TPM2_ALG_NULL:
      case TPM2_ALG_RSASSA:
        key->type = KeyType::kRsa;
        break;
      case TPM2_ALG_RSAPSS:
        key->type = KeyType::kRsaPss;
        break;
      default:
        *reason = kReasonUnsupportedScheme;
        return Error(Layer::kPolicy, "RSA key scheme is neither NULL, RSASSA nor RSAPSS");
    }
    key->fixed_scheme = scheme.scheme;
    if (scheme.scheme != TPM2_ALG_NULL) {
      WIMSE_ASSIGN_OR_RETURN(HashAlg h, HashAlgFromTpm(scheme.details.anySig.hashAlg));
      key->fixed_hash = h;
    }
    size_t len = static_cast<size_t>(pub.parameters.rsaDetail.keyBits) / 8;
    const TPM2B_PUBLIC_KEY_RSA& n = pub.unique.rsa;
    if (n.size > len || n.size == 0) {
      return Error(Layer::kParse, "RSA modulus does not match the key size");
    }
    key->modulus.assign(len, 0);
    std::memcpy(key->modulus.data() + len - n.size, n.buffer, n.size);
    key->exponent =
        pub.parameters.rsaDetail.exponent == 0 ? 65537 : pub.parameters.rsaDetail.exponent;
  } else {
    return Error(Layer::kPolicy, "neither an ECC nor an RSA key");
  }
  key->key = std::move(wk);
  key->BuildSoftwarePublic();
  return key;
}

int ExportPublic(const ProviderKey& key, int selection, OSSL_CALLBACK* cb, void* cbarg) {
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld) {
    return 0;
  }
  BignumPtr n;
  BignumPtr e;
  if (key.is_rsa()) {
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
      n.reset(BN_bin2bn(key.modulus.data(), static_cast<int>(key.modulus.size()), nullptr));
      e.reset(BN_new());
      if (!n || !e || BN_set_word(e.get(), key.exponent) != 1 ||
          OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
          OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
        return 0;
      }
    }
  } else {
    if ((selection & (OSSL_KEYMGMT_SELECT_ALL_PARAMETERS | OSSL_KEYMGMT_SELECT_PUBLIC_KEY)) != 0 &&
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, key.group_name(),
                                        0) != 1) {
      return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 &&
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, key.point.data(),
                                         key.point.size()) != 1) {
      return 0;
    }
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) {
    return 0;
  }
  return cb(params.get(), cbarg);
}

namespace {

void* Load(const void* reference, size_t reference_sz) noexcept {
  if (reference == nullptr || reference_sz != sizeof(KeyReference)) {
    return nullptr;
  }
  // Take ownership and null the sender's pointer so its cleanup is a no-op (guide §4.7).
  auto* ref = static_cast<KeyReference*>(const_cast<void*>(reference));
  ProviderKey* key = *ref;
  *ref = nullptr;
  return key;
}

void Free(void* keydata) noexcept { delete static_cast<ProviderKey*>(keydata); }

void* Dup(const void* keydata_from, int /*selection*/) noexcept {
  const auto* from = static_cast<const ProviderKey*>(keydata_from);
  if (from == nullptr) {
    return nullptr;
  }
  try {
    return new ProviderKey(*from);
  } catch (...) {
    return nullptr;
  }
}

// Public key, domain parameters and (in the TPM) the private key are always there: has()
// answers 1 for PRIVATE_KEY so OSSL_STORE returns a private key, and for PUBLIC_KEY so
// EVP_PKEY_eq does not demand a full keypair (guide §4.3).
// An imported key (no TPM part) has its public key and parameters only.
int Has(const void* keydata, int selection) noexcept {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  if (key == nullptr) {
    return 0;
  }
  if (key->key) {
    return 1;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return 0;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 && !key->has_public) {
    return 0;
  }
  return 1;
}

// Called with two of our keys (loaded or imported). Private-key comparison compares the public
// parts (the TPM objects cannot be compared otherwise).
int Match(const void* keydata1, const void* keydata2, int selection) noexcept {
  const auto* k1 = static_cast<const ProviderKey*>(keydata1);
  const auto* k2 = static_cast<const ProviderKey*>(keydata2);
  if (k1 == nullptr || k2 == nullptr || !k1->has_public || !k2->has_public || k1->alg != k2->alg ||
      k1->is_rsa() != k2->is_rsa()) {
    return 0;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0 && !k1->SamePublicKey(*k2)) {
    return 0;
  }
  return 1;
}

bool SetBn(OSSL_PARAM* p, const uint8_t* data, size_t len) {
  BignumPtr bn(BN_bin2bn(data, static_cast<int>(len), nullptr));
  return bn && OSSL_PARAM_set_BN(p, bn.get()) == 1;
}

int GetParams(void* keydata, OSSL_PARAM params[]) noexcept {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  if (key == nullptr) {
    return 0;
  }
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS);
  if (p != nullptr && OSSL_PARAM_set_int(p, key->bits()) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS);
  if (p != nullptr && OSSL_PARAM_set_int(p, key->security_bits()) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE);
  if (p != nullptr && OSSL_PARAM_set_int(p, static_cast<int>(key->max_signature_size())) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, HashName(key->default_hash())) != 1) {
    return 0;
  }
  // Only keys whose TPM scheme fixes the hash have a mandatory digest: libssl then offers only
  // sigalgs with that hash (ssl/t1_lib.c has_usable_cert).
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MANDATORY_DIGEST);
  if (p != nullptr && key->fixed_hash &&
      OSSL_PARAM_set_utf8_string(p, HashName(*key->fixed_hash)) != 1) {
    return 0;
  }
  if (key->is_rsa()) {
    p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_N);
    if (p != nullptr && !SetBn(p, key->modulus.data(), key->modulus.size())) {
      return 0;
    }
    p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_E);
    if (p != nullptr) {
      BignumPtr e(BN_new());
      if (!e || BN_set_word(e.get(), key->exponent) != 1 || OSSL_PARAM_set_BN(p, e.get()) != 1) {
        return 0;
      }
    }
    return 1;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, key->group_name()) != 1) {
    return 0;
  }
  for (const char* name : {OSSL_PKEY_PARAM_PUB_KEY, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY}) {
    p = OSSL_PARAM_locate(params, name);
    if (p != nullptr && OSSL_PARAM_set_octet_string(p, key->point.data(), key->point.size()) != 1) {
      return 0;
    }
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, "uncompressed") != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_ENCODING);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, "named_curve") != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS);
  if (p != nullptr && OSSL_PARAM_set_int(p, 0) != 1) {
    return 0;
  }
  size_t fs = key->field_size();
  for (int i = 0; i < 2; ++i) {
    p = OSSL_PARAM_locate(params, i == 0 ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_EC_PUB_Y);
    if (p != nullptr && !SetBn(p, key->point.data() + 1 + static_cast<size_t>(i) * fs, fs)) {
      return 0;
    }
  }
  return 1;
}

const OSSL_PARAM kEcGettableParams[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, nullptr, 0),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, nullptr),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_X, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_Y, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM kRsaGettableParams[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* EcGettableParams(void* /*provctx*/) noexcept { return kEcGettableParams; }
const OSSL_PARAM* RsaGettableParams(void* /*provctx*/) noexcept { return kRsaGettableParams; }

// Public half only. A selection with the private key is refused with
// kReasonPrivateExportRefused on the error queue, so EVP_PKEY_todata / EVP_PKEY_export of a key
// pair say why they failed. OpenSSL 3.0's own export probes (signature init, EVP_PKEY_eq, dup,
// SSL_CTX_use_PrivateKey) leave no error behind with this (ExportRefusesPrivateKey checks the
// queue after each), so the reason does not surface in unrelated places.
int Export(void* keydata, int selection, OSSL_CALLBACK* param_cb, void* cbarg) noexcept {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  if (key == nullptr) {
    return 0;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    // OpenSSL itself asks for everything on every EVP_DigestSignInit (evp_keymgmt_util_
    // export_to_provider) and pops the error: a reason code without formatted text keeps that
    // cheap (BIO_vsnprintf of a detail was a tenth of a provider signature's client CPU).
    RaiseReason(key->prov, kReasonPrivatePartNotExported, __FILE__, __LINE__, __func__);
    return 0;
  }
  try {
    return ExportPublic(*key, selection, param_cb, cbarg);
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM kEcExportParams[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kEcExportDomainParams[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kRsaExportParams[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kNoParams[] = {OSSL_PARAM_END};

const OSSL_PARAM* EcExportTypes(int selection) noexcept {
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return nullptr;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
    return kEcExportParams;
  }
  return kEcExportDomainParams;
}

const OSSL_PARAM* RsaExportTypes(int selection) noexcept {
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return nullptr;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
    return kRsaExportParams;
  }
  return kNoParams;
}

// --- Import of public keys (see the top of the file) -------------------------------------

template <KeyType T>
void* New(void* provctx) noexcept {
  try {
    auto key = std::make_unique<ProviderKey>();
    key->prov = static_cast<ProviderContext*>(provctx);
    key->type = T;
    key->alg = T == KeyType::kEc ? KeyAlg::kEcP256 : KeyAlg::kRsa2048;
    key->has_public = false;
    return key.release();
  } catch (...) {
    return nullptr;
  }
}

bool HasPrivateParams(const OSSL_PARAM params[]) {
  for (const char* name :
       {OSSL_PKEY_PARAM_PRIV_KEY, OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_COEFFICIENT1}) {
    if (OSSL_PARAM_locate_const(params, name) != nullptr) {
      return true;
    }
  }
  return false;
}

// Shapes this provider cannot represent (other curves and sizes, compressed points) are
// refused with 0 and no error: EVP_PKEY_eq then compares in the other key's keymgmt, and an
// error left here would surface later in unrelated places.
bool ImportEc(ProviderKey* key, int selection, const OSSL_PARAM params[]) {
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
  const char* group = nullptr;
  if (p == nullptr || OSSL_PARAM_get_utf8_string_ptr(p, &group) != 1 || group == nullptr) {
    return false;
  }
  std::string_view g(group);
  if (g == "prime256v1" || g == "P-256" || g == "secp256r1") {
    key->alg = KeyAlg::kEcP256;
  } else if (g == "secp384r1" || g == "P-384") {
    key->alg = KeyAlg::kEcP384;
  } else {
    return false;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0) {
    return true;  // domain parameters only
  }
  p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
  const void* point = nullptr;
  size_t len = 0;
  if (p == nullptr || OSSL_PARAM_get_octet_string_ptr(p, &point, &len) != 1 ||
      len != 1 + 2 * key->field_size() || static_cast<const uint8_t*>(point)[0] != 0x04) {
    return false;
  }
  const auto* bytes = static_cast<const uint8_t*>(point);
  key->point.assign(bytes, bytes + len);
  key->has_public = true;
  return true;
}

bool ImportRsa(ProviderKey* key, int selection, const OSSL_PARAM params[]) {
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0) {
    return true;  // RSA has no domain parameters we keep
  }
  const OSSL_PARAM* pn = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N);
  const OSSL_PARAM* pe = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E);
  BIGNUM* n_raw = nullptr;
  BIGNUM* e_raw = nullptr;
  if (pn == nullptr || pe == nullptr || OSSL_PARAM_get_BN(pn, &n_raw) != 1) {
    return false;
  }
  BignumPtr n(n_raw);
  if (OSSL_PARAM_get_BN(pe, &e_raw) != 1) {
    return false;
  }
  BignumPtr e(e_raw);
  int bits = BN_num_bits(n.get());
  if (bits == 2048) {
    key->alg = KeyAlg::kRsa2048;
  } else if (bits == 3072) {
    key->alg = KeyAlg::kRsa3072;
  } else {
    return false;
  }
  BN_ULONG word = BN_get_word(e.get());
  if (BN_num_bits(e.get()) > 32 || word == 0) {
    return false;
  }
  key->modulus.assign(static_cast<size_t>(bits / 8), 0);
  if (BN_bn2binpad(n.get(), key->modulus.data(), static_cast<int>(key->modulus.size())) < 0) {
    return false;
  }
  key->exponent = static_cast<uint32_t>(word);
  key->has_public = true;
  return true;
}

// Public part (and EC domain parameters) only, into an empty keydata from New(). A TPM key is
// never overwritten. Private material is refused with kReasonPrivateImportRefused.
int Import(void* keydata, int selection, const OSSL_PARAM params[]) noexcept {
  auto* key = static_cast<ProviderKey*>(keydata);
  if (key == nullptr || key->key || params == nullptr) {
    return 0;
  }
  try {
    if (HasPrivateParams(params)) {
      WIMSE_PROV_RAISE(key->prov, kReasonPrivateImportRefused,
                       "a software private key cannot be imported into wimsetpm (keep software "
                       "keys in the default provider; make TPM keys with openssl genpkey "
                       "-provider wimsetpm or wimse-tpm keygen)");
      return 0;
    }
    bool ok = key->is_rsa() ? ImportRsa(key, selection, params) : ImportEc(key, selection, params);
    if (!ok) {
      return 0;
    }
    if (key->has_public) {
      key->BuildSoftwarePublic();
    }
    return 1;
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM* EcImportTypes(int selection) noexcept {
  return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 ? kEcExportParams
                                                           : kEcExportDomainParams;
}

const OSSL_PARAM* RsaImportTypes(int selection) noexcept {
  return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 ? kRsaExportParams : kNoParams;
}

const char* EcQueryOperationName(int operation_id) noexcept {
  return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : nullptr;
}

const char* RsaQueryOperationName(int operation_id) noexcept {
  return operation_id == OSSL_OP_SIGNATURE ? "RSA" : nullptr;
}

// --- Key generation in the TPM (`openssl genpkey -provider wimsetpm`) ----------------------
//
// gen creates the key with tpm::WorkloadKey::Create (TPM2_Create under the SRK of 0x40000001)
// and returns a key whose TSS2 file the PrivateKeyInfo encoder writes. Only key pairs: domain
// parameter generation is refused, and only the algorithms and sizes we sign with.

struct GenCtx {
  ProviderContext* prov = nullptr;
  KeyType type = KeyType::kEc;
  KeyAlg alg = KeyAlg::kEcP256;
  int selection = 0;
  // Where the new key's auth value comes from (a file or an environment variable, never the
  // value itself: -pkeyopt arguments show in `ps` and shell history). Read at generation.
  AuthSource auth;
};

// The gen parameters naming the auth value's source (`-pkeyopt user-auth-file:PATH`,
// `-pkeyopt user-auth-env:NAME`). tpm2-openssl's `user-auth` (the value itself) is refused.
constexpr char kGenUserAuthFile[] = "user-auth-file";
constexpr char kGenUserAuthEnv[] = "user-auth-env";
constexpr char kGenUserAuth[] = "user-auth";

bool SetGenAuthParams(GenCtx* gen, const OSSL_PARAM params[]) {
  ProviderContext* prov = gen->prov;
  if (OSSL_PARAM_locate_const(params, kGenUserAuth) != nullptr) {
    WIMSE_PROV_RAISE(prov, kReasonAuthFailure,
                     "user-auth would put the auth value on the command line (visible in ps "
                     "and shell history); use -pkeyopt user-auth-file:PATH or "
                     "user-auth-env:NAME");
    return false;
  }
  for (const char* name : {kGenUserAuthFile, kGenUserAuthEnv}) {
    const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, name);
    if (p == nullptr) continue;
    const char* value = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &value) != 1 || value == nullptr || *value == 0) {
      WIMSE_PROV_RAISE(prov, kReasonAuthFailure, "%s needs a non-empty value", name);
      return false;
    }
    (name == kGenUserAuthFile ? gen->auth.file : gen->auth.env) = value;
  }
  if (!gen->auth.file.empty() && !gen->auth.env.empty()) {
    WIMSE_PROV_RAISE(prov, kReasonAuthFailure, "give one of %s and %s", kGenUserAuthFile,
                     kGenUserAuthEnv);
    return false;
  }
  return true;
}

bool SetGenParams(GenCtx* gen, const OSSL_PARAM params[]) {
  if (params == nullptr) {
    return true;
  }
  ProviderContext* prov = gen->prov;
  if (!SetGenAuthParams(gen, params)) {
    return false;
  }
  if (gen->type == KeyType::kEc) {
    const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p != nullptr) {
      const char* name = nullptr;
      if (OSSL_PARAM_get_utf8_string_ptr(p, &name) != 1 || name == nullptr) {
        return false;
      }
      std::string_view n(name);
      if (n == "P-256" || n == "prime256v1" || n == "secp256r1") {
        gen->alg = KeyAlg::kEcP256;
      } else if (n == "P-384" || n == "secp384r1") {
        gen->alg = KeyAlg::kEcP384;
      } else {
        WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey,
                         "curve %s is not supported (P-256 and P-384 only)", name);
        return false;
      }
    }
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_EC_ENCODING);
    if (p != nullptr) {
      const char* enc = nullptr;
      if (OSSL_PARAM_get_utf8_string_ptr(p, &enc) != 1 || enc == nullptr ||
          std::strcmp(enc, "named_curve") != 0) {
        WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey, "only named_curve encoding is supported");
        return false;
      }
    }
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT);
    if (p != nullptr) {
      const char* fmt = nullptr;
      if (OSSL_PARAM_get_utf8_string_ptr(p, &fmt) != 1 || fmt == nullptr ||
          std::strcmp(fmt, "uncompressed") != 0) {
        WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey, "only uncompressed points are supported");
        return false;
      }
    }
    return true;
  }
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_BITS);
  if (p != nullptr) {
    size_t bits = 0;
    if (OSSL_PARAM_get_size_t(p, &bits) != 1) {
      return false;
    }
    if (bits == 2048) {
      gen->alg = KeyAlg::kRsa2048;
    } else if (bits == 3072) {
      gen->alg = KeyAlg::kRsa3072;
    } else {
      WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey,
                       "RSA key size %zu is not supported (2048 and 3072 only)", bits);
      return false;
    }
  }
  p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_PRIMES);
  if (p != nullptr) {
    size_t primes = 0;
    if (OSSL_PARAM_get_size_t(p, &primes) != 1 || primes != 2) {
      WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey, "TPM RSA keys have exactly two primes");
      return false;
    }
  }
  p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E);
  if (p != nullptr) {
    BIGNUM* e = nullptr;
    if (OSSL_PARAM_get_BN(p, &e) != 1) {
      return false;
    }
    BignumPtr owned(e);
    if (!BN_is_word(e, 65537)) {
      WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey, "the public exponent must be 65537");
      return false;
    }
  }
  return true;
}

template <KeyType T>
void* GenInit(void* provctx, int selection, const OSSL_PARAM params[]) noexcept {
  auto* prov = static_cast<ProviderContext*>(provctx);
  try {
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0) {
      WIMSE_PROV_RAISE(prov, kReasonUnsupportedKey,
                       "only key pairs can be generated in the TPM (no domain parameters)");
      return nullptr;
    }
    auto gen = std::make_unique<GenCtx>();
    gen->prov = prov;
    gen->type = T;
    gen->alg = T == KeyType::kEc ? KeyAlg::kEcP256 : KeyAlg::kRsa2048;
    gen->selection = selection;
    if (!SetGenParams(gen.get(), params)) {
      return nullptr;
    }
    return gen.release();
  } catch (...) {
    return nullptr;
  }
}

int GenSetParams(void* genctx, const OSSL_PARAM params[]) noexcept {
  try {
    return SetGenParams(static_cast<GenCtx*>(genctx), params) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

const OSSL_PARAM kEcGenSettable[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuthFile, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuthEnv, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuth, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kRsaGenSettable[] = {
    OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_BITS, nullptr),
    OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_PRIMES, nullptr),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuthFile, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuthEnv, nullptr, 0),
    OSSL_PARAM_utf8_string(kGenUserAuth, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* EcGenSettableParams(void* /*genctx*/, void* /*provctx*/) noexcept {
  return kEcGenSettable;
}
const OSSL_PARAM* RsaGenSettableParams(void* /*genctx*/, void* /*provctx*/) noexcept {
  return kRsaGenSettable;
}

void* Gen(void* genctx, OSSL_CALLBACK* /*cb*/, void* /*cbarg*/) noexcept {
  auto* gen = static_cast<GenCtx*>(genctx);
  ProviderContext* prov = gen->prov;
  try {
    // WorkloadKey::Create builds the public EVP_PKEY in the NULL library context: give it one
    // with the default provider even when the application loaded only wimsetpm.
    SoftwareCtxScope software(prov);
    SecretBytes auth;
    if (gen->auth.any()) {
      auto value = ReadAuthValue(gen->auth, "the new key");
      if (!value.ok()) {
        WIMSE_PROV_RAISE_ERROR(prov, kReasonAuthFailure, value.error());
        return nullptr;
      }
      auth = std::move(value).value();
    }
    // With an auth value, TPM2_Create runs in the salted session with parameter encryption.
    auto wk = tpm::WorkloadKey::Create(prov->Tpm(), gen->alg, auth);
    if (!wk.ok()) {
      WIMSE_PROV_RAISE_ERROR(prov, ReasonForError(wk.error(), kReasonKeyGeneration), wk.error());
      return nullptr;
    }
    prov->keygens.fetch_add(1, std::memory_order_relaxed);
    int reason = kReasonKeyGeneration;
    auto key = ProviderKey::FromWorkloadKey(prov, std::move(wk).value(), &reason);
    if (!key.ok()) {
      WIMSE_PROV_RAISE_ERROR(prov, reason, key.error());
      return nullptr;
    }
    (*key)->parent = kOwnerHierarchyParent;
    return std::move(key).value().release();
  } catch (...) {
    return nullptr;
  }
}

void GenCleanup(void* genctx) noexcept { delete static_cast<GenCtx*>(genctx); }

#define WIMSE_FN(id, fn) \
  { id, reinterpret_cast<void (*)()>(fn) }

}  // namespace

const OSSL_DISPATCH kEcKeymgmtFunctions[] = {
    WIMSE_FN(OSSL_FUNC_KEYMGMT_LOAD, Load),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_NEW, New<KeyType::kEc>),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT, Import),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, EcImportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_FREE, Free),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_DUP, Dup),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_HAS, Has),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_MATCH, Match),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GET_PARAMS, GetParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, EcGettableParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT, Export),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, EcExportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, EcQueryOperationName),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_INIT, GenInit<KeyType::kEc>),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, GenSetParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, EcGenSettableParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN, Gen),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_CLEANUP, GenCleanup),
    {0, nullptr},
};

const OSSL_DISPATCH kRsaKeymgmtFunctions[] = {
    WIMSE_FN(OSSL_FUNC_KEYMGMT_LOAD, Load),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_NEW, New<KeyType::kRsa>),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT, Import),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, RsaImportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_FREE, Free),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_DUP, Dup),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_HAS, Has),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_MATCH, Match),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GET_PARAMS, GetParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, RsaGettableParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT, Export),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, RsaExportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, RsaQueryOperationName),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_INIT, GenInit<KeyType::kRsa>),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, GenSetParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, RsaGenSettableParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN, Gen),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GEN_CLEANUP, GenCleanup),
    {0, nullptr},
};

// RSA-PSS: keys whose TPM scheme is fixed to RSAPSS (e.g. made with tpm2_create -G rsa:rsapss).
// No generation: keys we create have scheme NULL and are "RSA" (they sign PSS too).
const OSSL_DISPATCH kRsaPssKeymgmtFunctions[] = {
    WIMSE_FN(OSSL_FUNC_KEYMGMT_LOAD, Load),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_NEW, New<KeyType::kRsaPss>),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT, Import),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, RsaImportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_FREE, Free),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_DUP, Dup),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_HAS, Has),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_MATCH, Match),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GET_PARAMS, GetParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, RsaGettableParams),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT, Export),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, RsaExportTypes),
    WIMSE_FN(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, RsaQueryOperationName),
    {0, nullptr},
};

}  // namespace wimse::provider
