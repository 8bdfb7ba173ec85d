// KEYMGMT "EC" for TPM-held keys (provider-guide §4).
//
// Keys come only from our decoders and store (load); there is no new/import/gen, so OpenSSL
// can never hand us a software key, and export refuses every selection that asks for the
// private key: OpenSSL then cannot move signing into the default provider with a public-only
// copy ("missing private key", tpm2-openssl #22/#63), while EVP_PKEY_eq and encoders still
// work through the public export.
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>

#include <cstring>
#include <new>

#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "provider/provider.h"

namespace wimse::provider {

size_t ProviderKey::field_size() const { return CurveFieldSize(alg); }

int ProviderKey::bits() const { return alg == KeyAlg::kEcP384 ? 384 : 256; }

int ProviderKey::security_bits() const { return alg == KeyAlg::kEcP384 ? 192 : 128; }

size_t ProviderKey::max_signature_size() const {
  // SEQUENCE { INTEGER r, INTEGER s }, each INTEGER at most tag + length + sign byte + field:
  // P-256: 2 + 2 * 35 = 72, P-384: 2 + 2 * 51 = 104 (OpenSSL's ECDSA_size, tpm2-openssl #135).
  size_t integer = 2 + field_size() + 1;
  size_t body = 2 * integer;
  return (body < 128 ? 2 : 3) + body;
}

HashAlg ProviderKey::default_hash() const {
  return alg == KeyAlg::kEcP384 ? HashAlg::kSha384 : HashAlg::kSha256;
}

const char* ProviderKey::group_name() const { return CurveGroupName(alg); }

Result<std::unique_ptr<ProviderKey>> ProviderKey::FromKeyFile(ProviderContext* prov,
                                                              Tss2KeyFile file, int* reason) {
  *reason = kReasonCannotLoadKey;
  uint32_t parent = file.parent;
  // Attributes are checked here, before WorkloadKey, so each refusal gets its own reason.
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub2b, UnmarshalTpm2bPublic(file.public_blob));
  const TPMT_PUBLIC& pub = pub2b.publicArea;
  if (pub.type != TPM2_ALG_ECC) {
    *reason = kReasonUnsupportedKey;
    return Error(Layer::kPolicy, "not an ECC key");
  }
  if ((pub.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
    // C05: an attestation key must never sign data the TPM did not hash itself.
    *reason = kReasonRestrictedKey;
    return Error(Layer::kPolicy, "key has the restricted attribute (attestation key)");
  }
  if ((pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0) {
    *reason = kReasonUnsupportedKey;
    return Error(Layer::kPolicy, "key lacks the sign attribute");
  }
  TPMI_ALG_ECC_SCHEME scheme = pub.parameters.eccDetail.scheme.scheme;
  if (scheme != TPM2_ALG_NULL && scheme != TPM2_ALG_ECDSA) {
    *reason = kReasonUnsupportedKey;
    return Error(Layer::kPolicy, "key scheme is neither NULL nor ECDSA");
  }
  auto alg_or = KeyAlgOfTpmPublic(pub);
  if (!alg_or.ok() || (*alg_or != KeyAlg::kEcP256 && *alg_or != KeyAlg::kEcP384)) {
    *reason = kReasonUnsupportedKey;
    return Error(Layer::kPolicy, "only NIST P-256 and P-384 keys are supported");
  }
  KeyAlg alg = *alg_or;
  WIMSE_ASSIGN_OR_RETURN(auto wk, tpm::WorkloadKey::FromKeyFile(prov->Tpm(), std::move(file)));
  auto key = std::make_unique<ProviderKey>();
  key->prov = prov;
  key->alg = alg;
  key->parent = parent;
  size_t fs = key->field_size();
  const TPM2B_ECC_PARAMETER& x = pub.unique.ecc.x;
  const TPM2B_ECC_PARAMETER& y = pub.unique.ecc.y;
  if (x.size > fs || y.size > fs) {
    *reason = kReasonUnsupportedKey;
    return Error(Layer::kParse, "EC coordinate wider than the curve field");
  }
  // TPMs may strip leading zeros from coordinates: always pad (tpm2-tools PR #1761).
  key->point.assign(1 + 2 * fs, 0);
  key->point[0] = 0x04;
  std::memcpy(key->point.data() + 1 + fs - x.size, x.buffer, x.size);
  std::memcpy(key->point.data() + 1 + 2 * fs - y.size, y.buffer, y.size);
  key->key = std::move(wk);
  return key;
}

namespace {

constexpr int kKeypairSelection = OSSL_KEYMGMT_SELECT_KEYPAIR;

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
int Has(const void* keydata, int /*selection*/) noexcept { return keydata != nullptr ? 1 : 0; }

// Only ever called with two of our keys (we have no import). Private-key comparison compares
// the public parts (the TPM objects cannot be compared otherwise).
int Match(const void* keydata1, const void* keydata2, int selection) noexcept {
  const auto* k1 = static_cast<const ProviderKey*>(keydata1);
  const auto* k2 = static_cast<const ProviderKey*>(keydata2);
  if (k1 == nullptr || k2 == nullptr) {
    return 0;
  }
  if (k1->alg != k2->alg) {
    return 0;
  }
  if ((selection & kKeypairSelection) != 0 && k1->point != k2->point) {
    return 0;
  }
  return 1;
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
  if (p != nullptr &&
      OSSL_PARAM_set_int(p, static_cast<int>(key->max_signature_size())) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, HashName(key->default_hash())) != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, key->group_name()) != 1) {
    return 0;
  }
  for (const char* name : {OSSL_PKEY_PARAM_PUB_KEY, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY}) {
    p = OSSL_PARAM_locate(params, name);
    if (p != nullptr &&
        OSSL_PARAM_set_octet_string(p, key->point.data(), key->point.size()) != 1) {
      return 0;
    }
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, "uncompressed") != 1) {
    return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS);
  if (p != nullptr && OSSL_PARAM_set_int(p, 0) != 1) {
    return 0;
  }
  size_t fs = key->field_size();
  for (int i = 0; i < 2; ++i) {
    p = OSSL_PARAM_locate(params, i == 0 ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_EC_PUB_Y);
    if (p == nullptr) {
      continue;
    }
    BignumPtr bn(BN_bin2bn(key->point.data() + 1 + static_cast<size_t>(i) * fs,
                           static_cast<int>(fs), nullptr));
    if (!bn || OSSL_PARAM_set_BN(p, bn.get()) != 1) {
      return 0;
    }
  }
  return 1;
}

const OSSL_PARAM kGettableParams[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, nullptr, 0),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, nullptr),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_X, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_Y, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* GettableParams(void* /*provctx*/) noexcept { return kGettableParams; }

// Public half only. Failing silently (no error raised) matters: OpenSSL tries an export with
// SELECT_ALL on every signature init to see whether another provider could do the work, and
// an error left on the queue would surface in unrelated places.
int Export(void* keydata, int selection, OSSL_CALLBACK* param_cb, void* cbarg) noexcept {
  const auto* key = static_cast<const ProviderKey*>(keydata);
  if (key == nullptr || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return 0;
  }
  OSSL_PARAM params[3];
  size_t n = 0;
  if ((selection & (OSSL_KEYMGMT_SELECT_ALL_PARAMETERS | OSSL_KEYMGMT_SELECT_PUBLIC_KEY)) !=
      0) {
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                   const_cast<char*>(key->group_name()), 0);
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_PKEY_PARAM_PUB_KEY, const_cast<uint8_t*>(key->point.data()), key->point.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  return param_cb(params, cbarg);
}

const OSSL_PARAM kExportParams[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
    OSSL_PARAM_END,
};
const OSSL_PARAM kExportDomainParams[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* ExportTypes(int selection) noexcept {
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    return nullptr;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
    return kExportParams;
  }
  return kExportDomainParams;
}

const char* QueryOperationName(int operation_id) noexcept {
  return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : nullptr;
}

}  // namespace

const OSSL_DISPATCH kEcKeymgmtFunctions[] = {
    {OSSL_FUNC_KEYMGMT_LOAD, reinterpret_cast<void (*)()>(Load)},
    {OSSL_FUNC_KEYMGMT_FREE, reinterpret_cast<void (*)()>(Free)},
    {OSSL_FUNC_KEYMGMT_DUP, reinterpret_cast<void (*)()>(Dup)},
    {OSSL_FUNC_KEYMGMT_HAS, reinterpret_cast<void (*)()>(Has)},
    {OSSL_FUNC_KEYMGMT_MATCH, reinterpret_cast<void (*)()>(Match)},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, reinterpret_cast<void (*)()>(GetParams)},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, reinterpret_cast<void (*)()>(GettableParams)},
    {OSSL_FUNC_KEYMGMT_EXPORT, reinterpret_cast<void (*)()>(Export)},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, reinterpret_cast<void (*)()>(ExportTypes)},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, reinterpret_cast<void (*)()>(QueryOperationName)},
    {0, nullptr},
};

}  // namespace wimse::provider
