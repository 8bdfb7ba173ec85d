#include "attest/verifier.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstring>

#include "attest/eventlog.h"
#include "crypto/ecdsa.h"
#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"

namespace wimse::attest {

namespace {

// TPMA_OBJECT bits an AK must have: a restricted signing key whose private part was made in
// and cannot leave this TPM (rats-tpm §3.5 A2; field case C05). A non-restricted key could
// sign a forged TPMS_ATTEST with TPM2_Sign.
constexpr uint32_t kAkRequiredAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                           TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                           TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
constexpr uint32_t kAkForbiddenAttributes = TPMA_OBJECT_DECRYPT;

// A certified workload key: non-exportable, TPM-generated, plain signing key (rats-tpm §3.4 C4).
constexpr uint32_t kKeyRequiredAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                            TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                            TPMA_OBJECT_SIGN_ENCRYPT;
constexpr uint32_t kKeyForbiddenAttributes = TPMA_OBJECT_DECRYPT | TPMA_OBJECT_RESTRICTED;

constexpr uint32_t kTpmGeneratedValue = 0xFF544347;  // TPM_GENERATED_VALUE, Part 2 §6.2

struct NamedBit {
  uint32_t bit;
  const char* name;
};
constexpr NamedBit kAttributeNames[] = {
    {TPMA_OBJECT_FIXEDTPM, "fixedTPM"},
    {TPMA_OBJECT_FIXEDPARENT, "fixedParent"},
    {TPMA_OBJECT_SENSITIVEDATAORIGIN, "sensitiveDataOrigin"},
    {TPMA_OBJECT_RESTRICTED, "restricted"},
    {TPMA_OBJECT_DECRYPT, "decrypt"},
    {TPMA_OBJECT_SIGN_ENCRYPT, "sign"},
};

// Empty when `attrs` has all `required` and none of `forbidden` bits; otherwise a description.
std::string AttributeProblems(uint32_t attrs, uint32_t required, uint32_t forbidden) {
  std::string out;
  for (const NamedBit& b : kAttributeNames) {
    if ((required & b.bit) && !(attrs & b.bit)) {
      out += (out.empty() ? "" : ", ") + std::string(b.name) + " not set";
    }
    if ((forbidden & b.bit) && (attrs & b.bit)) {
      out += (out.empty() ? "" : ", ") + std::string(b.name) + " set";
    }
  }
  return out;
}

uint32_t ReadBe32(ByteView b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

std::string Hex16(uint32_t v) {
  return HexEncode(Bytes{static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)});
}

// Collects failures for one appraisal.
class Findings {
 public:
  void Add(Reason reason, std::string detail) {
    failures_.push_back(Failure{reason, std::move(detail)});
  }
  std::vector<Failure>& failures() { return failures_; }

 private:
  std::vector<Failure> failures_;
};

// A TPMS_ATTEST checked for magic and type and parsed. `parsed` is false when the bytes cannot
// be parsed (then magic/type results are still reported when the header was readable).
struct ParsedAttest {
  bool parsed = false;
  TPMS_ATTEST attest{};
};

// Checks the magic and type from the raw header, then unmarshals the whole structure (which
// must consume every byte). The magic is checked here and not left to tss2-mu: only newer
// tss2-mu releases refuse a wrong magic (CVE-2024-29040), and the reason must be precise.
ParsedAttest CheckAttest(ByteView bytes, uint16_t want_type, Reason malformed, Reason not_generated,
                         Reason wrong_type, const char* what, Findings& f) {
  ParsedAttest out;
  if (bytes.size() < 6) {
    f.Add(malformed, std::string(what) + " is " + std::to_string(bytes.size()) + " bytes");
    return out;
  }
  if (bytes.size() > sizeof(TPMS_ATTEST)) {
    f.Add(malformed, std::string(what) + " larger than any TPMS_ATTEST");
    return out;
  }
  uint32_t magic = ReadBe32(bytes);
  if (magic != kTpmGeneratedValue) {
    f.Add(not_generated,
          std::string(what) + " magic is 0x" + HexEncode(bytes.subspan(0, 4)) + ", not 0xff544347");
  }
  uint16_t type = static_cast<uint16_t>((bytes[4] << 8) | bytes[5]);
  if (type != want_type) {
    f.Add(wrong_type,
          std::string(what) + " type is 0x" + Hex16(type) + ", expected 0x" + Hex16(want_type));
    // A different type selects a different TPMU_ATTEST arm: do not parse it as ours.
    return out;
  }
  Bytes copy(bytes.begin(), bytes.end());
  copy[0] = 0xFF;
  copy[1] = 0x54;
  copy[2] = 0x43;
  copy[3] = 0x47;
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Unmarshal(copy.data(), copy.size(), &offset, &out.attest);
  if (rc != TSS2_RC_SUCCESS) {
    f.Add(malformed,
          std::string(what) + " does not unmarshal (tss2-mu 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(rc >> 24), static_cast<uint8_t>(rc >> 16),
                              static_cast<uint8_t>(rc >> 8), static_cast<uint8_t>(rc)}) +
              ")");
    return out;
  }
  if (offset != copy.size()) {
    f.Add(malformed,
          std::string(what) + " has " + std::to_string(copy.size() - offset) + " trailing bytes");
    return out;
  }
  out.parsed = true;
  return out;
}

Result<TPMT_SIGNATURE> ParseSignature(ByteView bytes) {
  TPMT_SIGNATURE sig{};
  size_t offset = 0;
  if (bytes.size() > sizeof(TPMT_SIGNATURE) + 16) {
    return Error(Layer::kParse, "TPMT_SIGNATURE too large");
  }
  TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Unmarshal(bytes.data(), bytes.size(), &offset, &sig);
  if (rc != TSS2_RC_SUCCESS) {
    return Error(Layer::kParse, "TPMT_SIGNATURE does not unmarshal", rc);
  }
  if (offset != bytes.size()) {
    return Error(Layer::kParse, "TPMT_SIGNATURE has trailing bytes");
  }
  return sig;
}

// The signing scheme a key's public area fixes (for restricted keys the TPM uses exactly it).
struct SigScheme {
  uint16_t alg = TPM2_ALG_NULL;
  uint16_t hash = TPM2_ALG_NULL;
};

SigScheme SchemeOf(const TPMT_PUBLIC& pub) {
  if (pub.type == TPM2_ALG_ECC) {
    return {pub.parameters.eccDetail.scheme.scheme,
            pub.parameters.eccDetail.scheme.details.anySig.hashAlg};
  }
  if (pub.type == TPM2_ALG_RSA) {
    return {pub.parameters.rsaDetail.scheme.scheme,
            pub.parameters.rsaDetail.scheme.details.anySig.hashAlg};
  }
  return {};
}

Status VerifyRsaPss(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, "provider=default"));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_verify_init");
  }
  EvpMdPtr md(EVP_MD_fetch(nullptr, HashName(hash), "provider=default"));
  // TPMs sign PSS with the maximum salt, FIPS-mode TPMs with salt = hLen (rats-tpm §3.2 step 4,
  // field case C12): accept both by letting OpenSSL recover the salt length.
  if (!md || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_AUTO) != 1) {
    return OpenSslError("RSA-PSS parameters");
  }
  int rc = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size());
  ERR_clear_error();
  if (rc != 1) {
    return Error(Layer::kPolicy, "signature does not verify");
  }
  return OkStatus();
}

// A parameters-only EC key per curve, built once per process. EVP_PKEY_dup of it copies the
// curve's EC_GROUP (Montgomery constants; the generator table is shared by reference) instead
// of building the group from its name for every public area: EC_GROUP_new_by_curve_name and
// BN_MONT_CTX_set under EVP_PKEY_fromdata were 12% of an appraisal (bench/README, issue 5).
EVP_PKEY* MakeCurveTemplate(const char* group) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0),
      OSSL_PARAM_construct_end()};
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", "provider=default"));
  EVP_PKEY* out = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &out, EVP_PKEY_KEY_PARAMETERS, params) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return out;
}

EVP_PKEY* CurveTemplate(KeyAlg alg) {
  static EVP_PKEY* const kP256 = MakeCurveTemplate("prime256v1");
  static EVP_PKEY* const kP384 = MakeCurveTemplate("secp384r1");
  return alg == KeyAlg::kEcP256 ? kP256 : alg == KeyAlg::kEcP384 ? kP384 : nullptr;
}

// The software public key of a TPM public area. EC: the curve template duplicated and given
// the point; decoding the point (EC_POINT_oct2point) refuses points not on the curve, which for
// P-256/P-384 (cofactor 1) is the whole public-key validation, as in EcPublicKeyFromXY. RSA:
// PublicKeyFromTpmPublic.
Result<EvpPkeyPtr> SoftwareKeyOf(const TPMT_PUBLIC& pub) {
  if (pub.type != TPM2_ALG_ECC) {
    return PublicKeyFromTpmPublic(pub);
  }
  WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(pub));
  const TPMS_ECC_POINT& p = pub.unique.ecc;
  const size_t fs = CurveFieldSize(alg);
  if (p.x.size > fs || p.y.size > fs) {
    return Error(Layer::kParse, "EC coordinate wider than the curve field");
  }
  EVP_PKEY* tmpl = CurveTemplate(alg);
  if (tmpl == nullptr) {
    return OpenSslError("EC curve parameters");
  }
  uint8_t point[1 + 2 * 48] = {0x04};
  std::memcpy(point + 1 + fs - p.x.size, p.x.buffer, p.x.size);
  std::memcpy(point + 1 + 2 * fs - p.y.size, p.y.buffer, p.y.size);
  EvpPkeyPtr key(EVP_PKEY_dup(tmpl));
  if (!key) {
    return OpenSslError("EVP_PKEY_dup");
  }
  if (EVP_PKEY_set1_encoded_public_key(key.get(), point, 1 + 2 * fs) != 1) {
    return OpenSslError("EC public point is not on the curve");
  }
  return key;
}

// DER SubjectPublicKeyInfo of a public area whose key SoftwareKeyOf accepted. EC: the RFC 5480
// encoding (id-ecPublicKey, named curve, uncompressed point) written directly, as
// PublicKeyToDer does for the same curves (unit test: identical bytes), without reading the
// point back out of the EVP_PKEY; RSA: PublicKeyToDer.
Result<Bytes> SpkiOf(const TPMT_PUBLIC& pub, EVP_PKEY* key) {
  static constexpr uint8_t kP256[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
  static constexpr uint8_t kP384[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                      0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                      0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
  Result<KeyAlg> alg = KeyAlgOfTpmPublic(pub);
  if (pub.type != TPM2_ALG_ECC || !alg.ok()) {
    return PublicKeyToDer(key);
  }
  const bool p256 = *alg == KeyAlg::kEcP256;
  const size_t fs = CurveFieldSize(*alg);
  const TPMS_ECC_POINT& p = pub.unique.ecc;
  if (p.x.size > fs || p.y.size > fs) {
    return Error(Layer::kParse, "EC coordinate wider than the curve field");
  }
  Bytes out(p256 ? std::begin(kP256) : std::begin(kP384), p256 ? std::end(kP256) : std::end(kP384));
  const size_t at = out.size();
  out.resize(at + 1 + 2 * fs, 0);
  out[at] = 0x04;
  std::memcpy(out.data() + at + 1 + fs - p.x.size, p.x.buffer, p.x.size);
  std::memcpy(out.data() + at + 1 + 2 * fs - p.y.size, p.y.buffer, p.y.size);
  return out;
}

// The curve's EC_GROUP, built once per process and only read afterwards.
const EC_GROUP* CurveGroup(KeyAlg alg) {
  static EC_GROUP* const kP256 =
      EC_GROUP_new_by_curve_name_ex(nullptr, "provider=default", NID_X9_62_prime256v1);
  static EC_GROUP* const kP384 =
      EC_GROUP_new_by_curve_name_ex(nullptr, "provider=default", NID_secp384r1);
  return alg == KeyAlg::kEcP256 ? kP256 : alg == KeyAlg::kEcP384 ? kP384 : nullptr;
}

// Checks an ECC public area's point as SoftwareKeyOf would (same decoder), without a key.
Status CheckEcPoint(const TPMT_PUBLIC& pub) {
  WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(pub));
  const TPMS_ECC_POINT& p = pub.unique.ecc;
  const size_t fs = CurveFieldSize(alg);
  if (p.x.size > fs || p.y.size > fs) {
    return Error(Layer::kParse, "EC coordinate wider than the curve field");
  }
  const EC_GROUP* group = CurveGroup(alg);
  if (group == nullptr) {
    return OpenSslError("EC curve parameters");
  }
  uint8_t point[1 + 2 * 48] = {0x04};
  std::memcpy(point + 1 + fs - p.x.size, p.x.buffer, p.x.size);
  std::memcpy(point + 1 + 2 * fs - p.y.size, p.y.buffer, p.y.size);
  std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> pt(EC_POINT_new(group), EC_POINT_free);
  if (!pt || EC_POINT_oct2point(group, pt.get(), point, 1 + 2 * fs, nullptr) != 1) {
    return OpenSslError("EC public point is not on the curve");
  }
  return OkStatus();
}

// Verifies attestation signatures of one AK. For an ECDSA AK the EVP_PKEY_CTX is initialised
// once (verify_init fetches the signature method) and reused for every attestation of the
// appraisal. The signature's scheme must be the AK's own scheme (rats-tpm §3.2 step 1).
class AkSignatureVerifier {
 public:
  AkSignatureVerifier(const TPMT_PUBLIC& ak, EVP_PKEY* key) : ak_(ak), key_(key) {}

  // Verifies `sig_bytes` (TPMT_SIGNATURE) over `attest`. Returns the scheme hash on success.
  Result<HashAlg> Verify(ByteView attest, ByteView sig_bytes) {
    WIMSE_ASSIGN_OR_RETURN(TPMT_SIGNATURE sig, ParseSignature(sig_bytes));
    SigScheme scheme = SchemeOf(ak_);
    uint16_t sig_hash = 0;
    switch (sig.sigAlg) {
      case TPM2_ALG_ECDSA:
        sig_hash = sig.signature.ecdsa.hash;
        break;
      case TPM2_ALG_RSASSA:
        sig_hash = sig.signature.rsassa.hash;
        break;
      case TPM2_ALG_RSAPSS:
        sig_hash = sig.signature.rsapss.hash;
        break;
      default:
        return Error(Layer::kPolicy, "signature algorithm 0x" + Hex16(sig.sigAlg) +
                                         " is not ECDSA, RSASSA or RSAPSS");
    }
    if (sig.sigAlg != scheme.alg || sig_hash != scheme.hash) {
      return Error(Layer::kPolicy, "signature scheme 0x" + Hex16(sig.sigAlg) + "/0x" +
                                       Hex16(sig_hash) + " is not the AK scheme 0x" +
                                       Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash));
    }
    WIMSE_ASSIGN_OR_RETURN(HashAlg hash, HashAlgFromTpm(sig_hash));
    WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(hash, attest));
    if (sig.sigAlg == TPM2_ALG_ECDSA) {
      if (ak_.type != TPM2_ALG_ECC) {
        return Error(Layer::kPolicy, "ECDSA signature from a non-ECC AK");
      }
      WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(ak_));
      const TPMS_SIGNATURE_ECDSA& e = sig.signature.ecdsa;
      size_t field = CurveFieldSize(alg);
      if (e.signatureR.size == 0 || e.signatureS.size == 0 || e.signatureR.size > field ||
          e.signatureS.size > field) {
        return Error(Layer::kPolicy, "ECDSA r or s has an invalid length");
      }
      WIMSE_ASSIGN_OR_RETURN(Bytes der,
                             EcdsaRsToDer(ByteView(e.signatureR.buffer, e.signatureR.size),
                                          ByteView(e.signatureS.buffer, e.signatureS.size)));
      WIMSE_ASSIGN_OR_RETURN(EVP_PKEY_CTX * ctx, EcdsaContext(hash));
      int rc = EVP_PKEY_verify(ctx, der.data(), der.size(), digest.data(), digest.size());
      ERR_clear_error();
      if (rc != 1) {
        return Error(Layer::kPolicy, "signature does not verify");
      }
      return hash;
    }
    if (ak_.type != TPM2_ALG_RSA) {
      return Error(Layer::kPolicy, "RSA signature from a non-RSA AK");
    }
    const TPM2B_PUBLIC_KEY_RSA& s =
        sig.sigAlg == TPM2_ALG_RSASSA ? sig.signature.rsassa.sig : sig.signature.rsapss.sig;
    ByteView sv(s.buffer, s.size);
    if (sig.sigAlg == TPM2_ALG_RSASSA) {
      WIMSE_RETURN_IF_ERROR(VerifyDigest(key_, hash, digest, sv));
    } else {
      WIMSE_RETURN_IF_ERROR(VerifyRsaPss(key_, hash, digest, sv));
    }
    return hash;
  }

 private:
  // The verify context for `hash` (the AK scheme hash: the same on every call).
  Result<EVP_PKEY_CTX*> EcdsaContext(HashAlg hash) {
    if (!ctx_) {
      EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_, "provider=default"));
      const EVP_MD* md = SoftwareMd(hash);
      if (!ctx || md == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1 ||
          EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
        return OpenSslError("EVP_PKEY_verify_init");
      }
      ctx_ = std::move(ctx);
    }
    return ctx_.get();
  }

  const TPMT_PUBLIC& ak_;
  EVP_PKEY* key_;
  EvpPkeyCtxPtr ctx_;
};

// Name = nameAlg || H_nameAlg(TPMT_PUBLIC) computed over the bytes as received (the TPM2B_PUBLIC
// minus its size prefix), never over a re-marshalled structure (rats-tpm §3.1).
Result<Bytes> NameOfReceivedPublic(ByteView tpm2b_public, uint16_t name_alg) {
  WIMSE_ASSIGN_OR_RETURN(HashAlg hash, HashAlgFromTpm(name_alg));
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(hash, tpm2b_public.subspan(2)));
  Bytes name{static_cast<uint8_t>(name_alg >> 8), static_cast<uint8_t>(name_alg)};
  name.insert(name.end(), digest.begin(), digest.end());
  return name;
}

// A parsed public area with its software key.
struct PublicKeyInfo {
  TPMT_PUBLIC pub{};
  EvpPkeyPtr key;
  Bytes name;
};

// Parses a public area and its Name. With `need_key` (the AK, which verifies signatures) the
// software key is built; without (the workload key, only handed on as an SPKI) an EC point is
// only decoded on the curve's shared EC_GROUP, which applies the same checks as building the key
// (EC_POINT_oct2point: coordinates below p, point on the curve) without an EVP_PKEY. RSA keys
// are always built (their SPKI comes from the EVP_PKEY).
Result<PublicKeyInfo> ParsePublic(ByteView blob, bool need_key = true) {
  PublicKeyInfo info;
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC p, UnmarshalTpm2bPublic(blob));
  info.pub = p.publicArea;
  if (need_key || info.pub.type != TPM2_ALG_ECC) {
    WIMSE_ASSIGN_OR_RETURN(info.key, SoftwareKeyOf(info.pub));
  } else {
    WIMSE_RETURN_IF_ERROR(CheckEcPoint(info.pub));
  }
  WIMSE_ASSIGN_OR_RETURN(info.name, NameOfReceivedPublic(blob, info.pub.nameAlg));
  return info;
}

bool SameBytes(const uint8_t* a, size_t a_len, const uint8_t* b, size_t b_len) {
  return a_len == b_len && (a_len == 0 || std::memcmp(a, b, a_len) == 0);
}

// Checks the quoted selection against the expected one: exactly one bank, the expected hash,
// sizeofSelect 3..4 and an identical bitmap (rats-tpm §3.3 Q6; field case C03).
void CheckSelection(const TPML_PCR_SELECTION& sel, const PcrBankSelection& want, Findings& f) {
  if (sel.count != 1) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote selects " + std::to_string(sel.count) + " banks, expected 1");
    return;
  }
  const TPMS_PCR_SELECTION& s = sel.pcrSelections[0];
  if (s.hash != want.bank) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote bank is " + BankNameFromAlg(s.hash) + ", expected " + BankNameFromAlg(want.bank));
  }
  if (s.sizeofSelect < 3 || s.sizeofSelect > sizeof(s.pcrSelect)) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote sizeofSelect " + std::to_string(s.sizeofSelect) + " is not 3 or 4");
    return;
  }
  uint32_t mask = 0;
  for (size_t i = 0; i < s.sizeofSelect; ++i) {
    mask |= uint32_t{s.pcrSelect[i]} << (8 * i);
  }
  if (mask != want.mask) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quoted PCR bitmap 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(mask >> 16), static_cast<uint8_t>(mask >> 8),
                              static_cast<uint8_t>(mask)}) +
              " differs from the expected 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(want.mask >> 16),
                              static_cast<uint8_t>(want.mask >> 8),
                              static_cast<uint8_t>(want.mask)}));
  }
}

// Recomputes pcrDigest from the presented values over the *quoted* selection, hashing with the
// signature scheme's hash (not the bank hash: rats-tpm §3.3 Q8, §6 #2). Returns true when the
// digest matches.
bool CheckPcrDigest(const TPMS_QUOTE_INFO& info, const QuoteEvidence& q, HashAlg sig_hash,
                    Findings& f) {
  Result<uint16_t> bank = BankAlgFromName(q.bank);
  if (!bank.ok()) {
    f.Add(Reason::kPcrValuesMismatch, bank.error().message());
    return false;
  }
  Bytes concat;
  size_t used = 0;
  for (uint32_t b = 0; b < info.pcrSelect.count; ++b) {
    const TPMS_PCR_SELECTION& s = info.pcrSelect.pcrSelections[b];
    if (s.hash != bank.value()) {
      f.Add(Reason::kPcrValuesMismatch,
            "values are for bank " + q.bank + ", quote covers " + BankNameFromAlg(s.hash));
      return false;
    }
    size_t want_size = BankDigestSize(s.hash);
    for (uint32_t i = 0; i < 8u * s.sizeofSelect && i < 8u * sizeof(s.pcrSelect); ++i) {
      if (!(s.pcrSelect[i / 8] & (1u << (i % 8)))) {
        continue;
      }
      auto it = q.pcrs.find(i);
      if (it == q.pcrs.end()) {
        f.Add(Reason::kPcrValuesMismatch, "quoted PCR " + std::to_string(i) + " has no value");
        return false;
      }
      if (it->second.size() != want_size) {
        f.Add(Reason::kPcrValuesMismatch, "PCR " + std::to_string(i) + " value is " +
                                              std::to_string(it->second.size()) + " bytes");
        return false;
      }
      concat.insert(concat.end(), it->second.begin(), it->second.end());
      ++used;
    }
  }
  if (used != q.pcrs.size()) {
    f.Add(Reason::kPcrValuesMismatch, "values presented for PCRs outside the quoted selection");
    return false;
  }
  Result<Bytes> digest = Digest(sig_hash, concat);
  if (!digest.ok() ||
      !ConstantTimeEqual(digest.value(), ByteView(info.pcrDigest.buffer, info.pcrDigest.size))) {
    f.Add(Reason::kPcrDigestMismatch, "PCR values do not hash to the quoted pcrDigest");
    return false;
  }
  return true;
}

void CheckNonce(const TPM2B_DATA& extra, const Bytes& expected, Reason reason, const char* what,
                Findings& f) {
  // Length is not secret; the content comparison is constant time (field case C01).
  if (!ConstantTimeEqual(ByteView(extra.buffer, extra.size), expected)) {
    f.Add(reason, std::string(what) + " extraData (" + std::to_string(extra.size) +
                      " bytes) is not the expected nonce");
  }
}

// Clock/reset/restart ordering per AK (rats-tpm §3.6): reset must not decrease; restart may
// only decrease together with a reset increase; within one (reset, restart) pair the clock must
// increase. `last` is the floor: the highest state accepted before this round's nonce was
// issued (AppraisalOptions::last_clock), so quotes of one TPM appraised out of clock order
// still pass, and only a quote older than one accepted before its nonce is a rollback.
void CheckClock(const TPMS_CLOCK_INFO& now, const ClockState& last, AppraisalResult& result,
                Findings& f) {
  if (now.resetCount < last.reset_count) {
    f.Add(Reason::kClockRollback, "resetCount went back from " + std::to_string(last.reset_count) +
                                      " to " + std::to_string(now.resetCount));
    return;
  }
  if (now.resetCount > last.reset_count) {
    result.rebooted = true;
    return;
  }
  if (now.restartCount < last.restart_count) {
    f.Add(Reason::kClockRollback, "restartCount went back without a reset");
    return;
  }
  if (now.restartCount > last.restart_count) {
    result.resumed = true;
    return;
  }
  if (now.clock <= last.clock) {
    f.Add(Reason::kClockRollback,
          "clock did not advance past a quote accepted before this nonce was issued (" +
              std::to_string(last.clock) + " -> " + std::to_string(now.clock) + ")");
  }
}

void CheckEventDigest(const Bytes& digest, const AttestationPolicy* policy, const std::string& what,
                      AppraisalResult& result, Findings& f) {
  result.event_digests.insert(digest);
  if (policy == nullptr) {
    return;
  }
  if (policy->denied_event_digests.count(digest) != 0) {
    f.Add(Reason::kEventDenied, what + " digest " + HexEncode(digest) + " is denied");
  } else if (!policy->allowed_event_digests.empty() &&
             policy->allowed_event_digests.count(digest) == 0) {
    f.Add(Reason::kEventNotAllowed, what + " digest " + HexEncode(digest) + " is not allowed");
  }
}

// Replays the logs against the quote-verified PCR values (rats-tpm §4.2, §4.4).
void CheckLogs(const Tpm2Evidence& e, uint16_t bank, uint32_t mask,
               const std::map<uint32_t, Bytes>& quoted, const AttestationPolicy* policy,
               AppraisalResult& result, Findings& f) {
  result.events_allow_listed =
      policy != nullptr && !policy->allowed_event_digests.empty() && (e.uefi_log || e.ima_log);
  if (e.uefi_log) {
    Result<LogFormat> fmt = LogFormatFromName(e.uefi_log->format);
    Result<EventLog> log = Error(Layer::kParse, "");
    if (!fmt.ok() || *fmt != LogFormat::kTcgPcClient) {
      f.Add(Reason::kEventLogMalformed, "logs.uefi format is not tcg-pc-client-crypto-agile");
    } else if (log = ParseTcgLog(e.uefi_log->data); !log.ok()) {
      f.Add(Reason::kEventLogMalformed, log.error().message());
    } else {
      Result<std::map<uint32_t, Bytes>> replayed = ReplayLog(*log, bank);
      if (!replayed.ok()) {
        f.Add(Reason::kEventLogReplayMismatch, replayed.error().message());
      } else {
        bool ok = true;
        for (const auto& [pcr, value] : quoted) {
          if (pcr == 10 && e.ima_log) {
            continue;  // IMA's PCR, replayed below
          }
          auto it = replayed->find(pcr);
          const Bytes want = it == replayed->end() ? InitialPcrValue(pcr, bank) : it->second;
          if (!ConstantTimeEqual(want, value)) {
            ok = false;
            f.Add(Reason::kEventLogReplayMismatch, "UEFI log replays PCR " + std::to_string(pcr) +
                                                       " to " + HexEncode(want) + ", quoted " +
                                                       HexEncode(value));
          }
        }
        if (ok) {
          result.uefi_log_checked = true;
          for (const LogEvent& ev : log->events) {
            if (ev.type == kEvNoAction || !(mask & (1u << ev.pcr))) {
              continue;
            }
            CheckEventDigest(ev.digests.at(bank), policy,
                             "UEFI event (PCR " + std::to_string(ev.pcr) + ")", result, f);
          }
        }
      }
    }
  }
  if (e.ima_log) {
    Result<LogFormat> fmt = LogFormatFromName(e.ima_log->format);
    Result<EventLog> log = Error(Layer::kParse, "");
    if (!fmt.ok() || *fmt == LogFormat::kTcgPcClient) {
      f.Add(Reason::kEventLogMalformed, "logs.ima format is not ima-binary or ima-ascii");
    } else if (log = ParseEventLog(*fmt, e.ima_log->data); !log.ok()) {
      f.Add(Reason::kEventLogMalformed, log.error().message());
    } else if (quoted.count(10) == 0) {
      f.Add(Reason::kEventLogReplayMismatch, "IMA log present but PCR 10 is not quoted");
    } else if (auto other = std::find_if(log->events.begin(), log->events.end(),
                                         [](const LogEvent& ev) { return ev.pcr != 10; });
               other != log->events.end()) {
      // Only PCR 10 is replayed; an entry for another PCR (an IMA policy rule with pcr=) could
      // be neither bound to the quote nor appraised, so the log is refused as a whole.
      f.Add(Reason::kEventLogMalformed,
            "IMA log entry " + std::to_string(other - log->events.begin()) + " extends PCR " +
                std::to_string(other->pcr) + "; only PCR 10 entries can be replayed and appraised");
    } else {
      // The log may run ahead of the quote: accept the shortest prefix that replays exactly to
      // the quoted PCR 10 and appraise only that prefix (field case C04 #4).
      Bytes pcr10 = InitialPcrValue(10, bank);
      const Bytes& want = quoted.at(10);
      size_t matched = ConstantTimeEqual(pcr10, want) ? 0 : SIZE_MAX;
      for (size_t i = 0; i < log->events.size() && matched == SIZE_MAX; ++i) {
        const LogEvent& ev = log->events[i];
        if (ev.pcr != 10) {
          continue;
        }
        Result<Bytes> next = ExtendPcr(bank, pcr10, ev.digests.at(bank));
        if (!next.ok()) {
          break;
        }
        pcr10 = std::move(next).value();
        if (ConstantTimeEqual(pcr10, want)) {
          matched = i + 1;
        }
      }
      if (matched == SIZE_MAX) {
        f.Add(Reason::kEventLogReplayMismatch, "no prefix of the IMA log replays to PCR 10");
      } else {
        result.ima_log_checked = true;
        bool allow_list = policy != nullptr && !policy->allowed_event_digests.empty();
        for (size_t i = 0; i < matched; ++i) {
          const LogEvent& ev = log->events[i];
          if (ev.violation) {
            // A file measured while open for writing (or changed under IMA): what ran is not
            // known, so an allow-list policy cannot approve it.
            ++result.ima_violations;
            if (allow_list) {
              f.Add(Reason::kEventNotAllowed, "IMA violation entry " + std::to_string(i) + " (" +
                                                  ev.path + "): the file's measurement is unknown");
            }
            continue;
          }
          size_t colon = ev.file_digest.find(':');
          Result<Bytes> fd = HexDecode(ev.file_digest.substr(colon + 1));
          if (!fd.ok()) {
            f.Add(Reason::kEventLogMalformed,
                  "IMA entry " + std::to_string(i) + " has an unreadable file digest");
            continue;
          }
          CheckEventDigest(*fd, policy, "IMA " + ev.path, result, f);
        }
      }
    }
  }
}

// QN(child) = nameAlg || H_nameAlg(QN(parent) || Name(child)), TPM 2.0 Part 1 §16 (the
// Qualified Name); the QN of a hierarchy is its handle. Empty on an unusable hash.
Bytes QualifiedName(uint16_t name_alg, ByteView parent_qn, ByteView name) {
  Result<HashAlg> hash = HashAlgFromTpm(name_alg);
  if (!hash.ok()) {
    return {};
  }
  Bytes in(parent_qn.begin(), parent_qn.end());
  in.insert(in.end(), name.begin(), name.end());
  Result<Bytes> digest = Digest(*hash, in);
  if (!digest.ok()) {
    return {};
  }
  Bytes out{static_cast<uint8_t>(name_alg >> 8), static_cast<uint8_t>(name_alg)};
  out.insert(out.end(), digest->begin(), digest->end());
  return out;
}

// Appraises TPM2_CertifyCreation of the workload key (TPM 2.0 Part 3 §18.3): the attestation is
// TPM-made, signed by the AK over this nonce, names the presented key, and its creationHash is
// the digest of the presented creation data; the creation data names the key's parent, which
// must be the parent in the certified key's qualifiedName, a primary of the storage hierarchy,
// and the expected parent when one is configured; PCRs selected at creation are compared with
// the policy's reference values when it has them. The TPM checked the creation ticket (an HMAC
// with its proof value) before signing, so the creation data is what TPM2_Create returned for
// this key, in this TPM.
void CheckCreation(const CreationEvidence& ce, const PublicKeyInfo* key, const TPMS_ATTEST* certify,
                   const TPMS_ATTEST* quote, AkSignatureVerifier* ak,
                   const AppraisalOptions& options, AppraisalResult& result, Findings& f) {
  ParsedAttest pa =
      CheckAttest(ce.certify.attest, TPM2_ST_ATTEST_CREATION, Reason::kCreationMalformed,
                  Reason::kCreationNotTpmGenerated, Reason::kCreationWrongType, "creation", f);
  if (ak == nullptr) {
    f.Add(Reason::kCreationSignatureInvalid, "no usable AK public key");
  } else if (Result<HashAlg> h = ak->Verify(ce.certify.attest, ce.certify.signature); !h.ok()) {
    f.Add(Reason::kCreationSignatureInvalid, h.error().message());
  }
  // The creation data: a TPM2B_CREATION_DATA consumed exactly, its size prefix consistent.
  TPM2B_CREATION_DATA cd{};
  bool cd_ok = false;
  {
    size_t offset = 0;
    const ByteView blob = ce.creation_data;
    if (blob.size() < 2 || blob.size() > sizeof(TPM2B_CREATION_DATA) ||
        ((size_t{blob[0]} << 8) | blob[1]) != blob.size() - 2) {
      f.Add(Reason::kCreationMalformed, "creation data size prefix does not match its length");
    } else if (Tss2_MU_TPM2B_CREATION_DATA_Unmarshal(blob.data(), blob.size(), &offset, &cd) !=
                   TSS2_RC_SUCCESS ||
               offset != blob.size()) {
      f.Add(Reason::kCreationMalformed, "creation data does not unmarshal as TPM2B_CREATION_DATA");
    } else {
      cd_ok = true;
    }
  }
  if (!pa.parsed) {
    return;
  }
  const TPMS_ATTEST& a = pa.attest;
  CheckNonce(a.extraData, options.expected_nonce, Reason::kCreationNonceMismatch, "creation", f);
  if (quote != nullptr) {
    if (!SameBytes(a.qualifiedSigner.name, a.qualifiedSigner.size, quote->qualifiedSigner.name,
                   quote->qualifiedSigner.size)) {
      f.Add(Reason::kCertifySignerMismatch, "creation and quote name different qualified signers");
    }
    if (a.clockInfo.resetCount != quote->clockInfo.resetCount ||
        a.clockInfo.restartCount != quote->clockInfo.restartCount) {
      f.Add(Reason::kBootMismatch, "creation attestation and quote come from different TPM boots");
    }
  }
  const TPMS_CREATION_INFO& info = a.attested.creation;
  if (key == nullptr) {
    return;  // key_public_malformed already reported
  }
  if (!SameBytes(info.objectName.name, info.objectName.size, key->name.data(), key->name.size())) {
    f.Add(Reason::kCreationNameMismatch,
          "the creation attestation names another object than the presented key");
  }
  if (!cd_ok) {
    return;
  }
  // creationHash = H_nameAlg(TPMS_CREATION_DATA) over the bytes received (Part 3 §12.1).
  Result<HashAlg> name_hash = HashAlgFromTpm(key->pub.nameAlg);
  Result<Bytes> digest = name_hash.ok() ? Digest(*name_hash, ByteView(ce.creation_data).subspan(2))
                                        : Result<Bytes>(name_hash.error());
  if (!digest.ok() ||
      !ConstantTimeEqual(*digest, ByteView(info.creationHash.buffer, info.creationHash.size))) {
    f.Add(Reason::kCreationHashMismatch,
          "the creation data does not hash to the certified creationHash");
    return;  // the creation data is not the certified one: its contents mean nothing
  }
  const TPMS_CREATION_DATA& c = cd.creationData;
  const ByteView parent_name(c.parentName.name, c.parentName.size);
  const ByteView parent_qn(c.parentQualifiedName.name, c.parentQualifiedName.size);
  // The certified key's qualifiedName (TPM2_Certify, now) must descend from this parent.
  if (certify != nullptr) {
    const TPM2B_NAME& qn = certify->attested.certify.qualifiedName;
    Bytes want = QualifiedName(key->pub.nameAlg, parent_qn, key->name);
    if (!SameBytes(qn.name, qn.size, want.data(), want.size())) {
      f.Add(Reason::kCreationParentMismatch,
            "the certified qualifiedName does not descend from the creation data's parent");
    }
  }
  // The parent is a primary key of the storage (owner) hierarchy: QN = H(TPM_RH_OWNER || Name).
  const uint8_t owner[4] = {0x40, 0x00, 0x00, 0x01};
  if (parent_name.size() < 2 ||
      ((uint16_t{parent_name[0]} << 8) | parent_name[1]) != c.parentNameAlg ||
      QualifiedName(c.parentNameAlg, owner, parent_name) !=
          Bytes(parent_qn.begin(), parent_qn.end())) {
    f.Add(Reason::kCreationParentMismatch,
          "the key's parent is not a primary key of the storage hierarchy");
  }
  if (options.expected_creation_parent_name &&
      !ConstantTimeEqual(*options.expected_creation_parent_name, parent_name)) {
    f.Add(Reason::kCreationParentMismatch,
          "the key was created under " + HexEncode(parent_name) + ", not the expected parent");
  }
  result.creation_parent_name.assign(parent_name.begin(), parent_name.end());
  // PCRs selected at creation: pcrDigest = H_nameAlg(selected values in selection order).
  bool any_selected = false;
  bool checkable = options.policy != nullptr && name_hash.ok();
  Bytes concat;
  for (uint32_t b = 0; b < c.pcrSelect.count && b < TPM2_NUM_PCR_BANKS; ++b) {
    const TPMS_PCR_SELECTION& sel = c.pcrSelect.pcrSelections[b];
    for (uint32_t i = 0; i < 8u * sel.sizeofSelect && i < 8u * sizeof(sel.pcrSelect); ++i) {
      if (!(sel.pcrSelect[i / 8] & (1u << (i % 8)))) {
        continue;
      }
      any_selected = true;
      if (!checkable || sel.hash != options.policy->pcrs.bank) {
        checkable = false;
        continue;
      }
      auto it = options.policy->reference_values.find(i);
      if (it == options.policy->reference_values.end()) {
        checkable = false;
        continue;
      }
      concat.insert(concat.end(), it->second.begin(), it->second.end());
    }
  }
  if (any_selected && checkable) {
    Result<Bytes> pcr_digest = Digest(*name_hash, concat);
    if (!pcr_digest.ok() ||
        !ConstantTimeEqual(*pcr_digest, ByteView(c.pcrDigest.buffer, c.pcrDigest.size))) {
      f.Add(Reason::kCreationPcrMismatch,
            "the PCRs at the key's creation differ from the policy's reference values");
    } else {
      result.creation_pcrs_checked = true;
    }
  }
}

}  // namespace

std::string AkPolicyProblems(const TPMT_PUBLIC& pub) {
  std::string problems =
      AttributeProblems(pub.objectAttributes, kAkRequiredAttributes, kAkForbiddenAttributes);
  if (!HashAlgFromTpm(pub.nameAlg).ok()) {
    problems += (problems.empty() ? "" : ", ") + std::string("nameAlg 0x") + Hex16(pub.nameAlg) +
                " not allowed";
  }
  if (!problems.empty()) {
    return "ak_attributes: " + problems;
  }
  SigScheme scheme = SchemeOf(pub);
  if (scheme.alg == TPM2_ALG_NULL || !HashAlgFromTpm(scheme.hash).ok()) {
    return "ak_scheme: AK scheme 0x" + Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash) +
           " is not a signing scheme with SHA-256/384/512";
  }
  return "";
}

std::string_view ReasonCode(Reason reason) {
  switch (reason) {
    case Reason::kCmwMalformed:
      return "cmw_malformed";
    case Reason::kEvidenceMalformed:
      return "evidence_malformed";
    case Reason::kNoncePolicy:
      return "nonce_policy";
    case Reason::kAkPublicMalformed:
      return "ak_public_malformed";
    case Reason::kAkNotTrusted:
      return "ak_not_trusted";
    case Reason::kAkAttributes:
      return "ak_attributes";
    case Reason::kAkScheme:
      return "ak_scheme";
    case Reason::kQuoteMissing:
      return "quote_missing";
    case Reason::kQuoteMalformed:
      return "quote_malformed";
    case Reason::kQuoteNotTpmGenerated:
      return "quote_not_tpm_generated";
    case Reason::kQuoteWrongType:
      return "quote_wrong_type";
    case Reason::kQuoteSignatureInvalid:
      return "quote_signature_invalid";
    case Reason::kQuoteNonceMismatch:
      return "quote_nonce_mismatch";
    case Reason::kPcrSelectionMismatch:
      return "pcr_selection_mismatch";
    case Reason::kPcrValuesMismatch:
      return "pcr_values_mismatch";
    case Reason::kPcrDigestMismatch:
      return "pcr_digest_mismatch";
    case Reason::kClockNotSafe:
      return "clock_not_safe";
    case Reason::kKeyMissing:
      return "key_missing";
    case Reason::kKeyPublicMalformed:
      return "key_public_malformed";
    case Reason::kKeyAttributes:
      return "key_attributes";
    case Reason::kCertifyMalformed:
      return "certify_malformed";
    case Reason::kCertifyNotTpmGenerated:
      return "certify_not_tpm_generated";
    case Reason::kCertifyWrongType:
      return "certify_wrong_type";
    case Reason::kCertifySignatureInvalid:
      return "certify_signature_invalid";
    case Reason::kCertifyNonceMismatch:
      return "certify_nonce_mismatch";
    case Reason::kCertifyNameMismatch:
      return "certify_name_mismatch";
    case Reason::kCertifyQualifiedNameMissing:
      return "certify_qualified_name_missing";
    case Reason::kCertifySignerMismatch:
      return "certify_signer_mismatch";
    case Reason::kBootMismatch:
      return "boot_mismatch";
    case Reason::kBankNotAllowed:
      return "bank_not_allowed";
    case Reason::kAkNotEnrolled:
      return "ak_not_enrolled";
    case Reason::kEvidenceTooOld:
      return "evidence_too_old";
    case Reason::kClockRollback:
      return "clock_rollback";
    case Reason::kPcrReferenceMismatch:
      return "pcr_reference_mismatch";
    case Reason::kEventLogMalformed:
      return "event_log_malformed";
    case Reason::kEventLogReplayMismatch:
      return "event_log_replay_mismatch";
    case Reason::kEventDenied:
      return "event_denied";
    case Reason::kEventNotAllowed:
      return "event_not_allowed";
    case Reason::kCreationMissing:
      return "creation_missing";
    case Reason::kCreationMalformed:
      return "creation_malformed";
    case Reason::kCreationNotTpmGenerated:
      return "creation_not_tpm_generated";
    case Reason::kCreationWrongType:
      return "creation_wrong_type";
    case Reason::kCreationSignatureInvalid:
      return "creation_signature_invalid";
    case Reason::kCreationNonceMismatch:
      return "creation_nonce_mismatch";
    case Reason::kCreationNameMismatch:
      return "creation_name_mismatch";
    case Reason::kCreationHashMismatch:
      return "creation_hash_mismatch";
    case Reason::kCreationParentMismatch:
      return "creation_parent_mismatch";
    case Reason::kCreationPcrMismatch:
      return "creation_pcr_mismatch";
  }
  return "unknown";
}

std::string Failure::ToString() const {
  std::string out(ReasonCode(reason));
  if (!detail.empty()) {
    out += ": " + detail;
  }
  return out;
}

bool AppraisalResult::Has(Reason reason) const {
  return std::any_of(failures.begin(), failures.end(),
                     [&](const Failure& f) { return f.reason == reason; });
}

std::string AppraisalResult::Summary() const {
  if (affirming()) {
    return "affirming";
  }
  std::string out = "contraindicated: ";
  for (size_t i = 0; i < failures.size(); ++i) {
    out += (i ? "; " : "") + failures[i].ToString();
  }
  return out;
}

AppraisalResult AppraiseEvidence(const Tpm2Evidence& e, const AppraisalOptions& options) {
  AppraisalResult result;
  Findings f;
  const AttestationPolicy* policy = options.policy;
  const PcrBankSelection want_sel = policy != nullptr ? policy->pcrs : options.expected_pcrs;
  const bool allow_sha1 = policy != nullptr ? policy->allow_sha1 : options.allow_sha1;
  if (BankDigestSize(want_sel.bank) == 0 || (want_sel.bank == TPM2_ALG_SHA1 && !allow_sha1)) {
    f.Add(Reason::kBankNotAllowed,
          "bank " + BankNameFromAlg(want_sel.bank) + " is not allowed by the policy");
  }
  if (policy != nullptr && policy->max_evidence_age_seconds > 0) {
    if (options.nonce_issued_unix <= 0) {
      f.Add(Reason::kEvidenceTooOld,
            "the policy limits evidence age to " +
                std::to_string(policy->max_evidence_age_seconds) +
                " s but the nonce's issue time was not given (CLI: --nonce-issued)");
    } else if (options.now_unix < options.nonce_issued_unix) {
      f.Add(Reason::kEvidenceTooOld,
            "the nonce's issue time is " +
                std::to_string(options.nonce_issued_unix - options.now_unix) + " s in the future");
    } else if (options.now_unix - options.nonce_issued_unix > policy->max_evidence_age_seconds) {
      f.Add(Reason::kEvidenceTooOld,
            "the nonce was issued " + std::to_string(options.now_unix - options.nonce_issued_unix) +
                " s ago, the policy allows " + std::to_string(policy->max_evidence_age_seconds));
    }
  }

  if (options.expected_nonce.size() < options.min_nonce_size) {
    f.Add(Reason::kNoncePolicy,
          "expected nonce is " + std::to_string(options.expected_nonce.size()) +
              " bytes, policy requires at least " + std::to_string(options.min_nonce_size));
  }

  // --- AK ---
  Result<PublicKeyInfo> ak = ParsePublic(e.ak_public);
  if (!ak.ok()) {
    f.Add(Reason::kAkPublicMalformed, ak.error().message());
  } else {
    std::string problems =
        AttributeProblems(ak->pub.objectAttributes, kAkRequiredAttributes, kAkForbiddenAttributes);
    if (!problems.empty()) {
      f.Add(Reason::kAkAttributes, problems);
    }
    SigScheme scheme = SchemeOf(ak->pub);
    if (scheme.alg == TPM2_ALG_NULL || !HashAlgFromTpm(scheme.hash).ok()) {
      f.Add(Reason::kAkScheme, "AK scheme 0x" + Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash) +
                                   " is not a signing scheme with SHA-256/384/512");
    }
    if (!HashAlgFromTpm(ak->pub.nameAlg).ok()) {
      f.Add(Reason::kAkAttributes, "AK nameAlg 0x" + Hex16(ak->pub.nameAlg) + " not allowed");
    }
    if (options.trusted_ak_spki.has_value()) {
      Result<EvpPkeyPtr> trusted = PublicKeyFromDer(*options.trusted_ak_spki);
      if (!trusted.ok() || EVP_PKEY_eq(trusted->get(), ak->key.get()) != 1) {
        f.Add(Reason::kAkNotTrusted, "the evidence AK is not the trusted AK");
      } else {
        result.ak_enrolled = true;
      }
    }
    if (!options.trusted_ak_spki.has_value() && !options.enrolled_ak_name.has_value() &&
        !options.allow_unenrolled_ak) {
      f.Add(Reason::kAkNotTrusted,
            "no enrolled or pinned AK: the AK's attributes are only its own claim (enrol the AK "
            "or pin its public key)");
    }
    if (options.enrolled_ak_name.has_value()) {
      if (!ConstantTimeEqual(*options.enrolled_ak_name, ak->name)) {
        f.Add(Reason::kAkNotEnrolled,
              "the evidence AK Name " + HexEncode(ak->name) + " is not the enrolled AK Name");
        result.ak_enrolled = false;
      } else {
        result.ak_enrolled = !options.trusted_ak_spki.has_value() || result.ak_enrolled;
      }
    }
  }
  EVP_PKEY* ak_key = ak.ok() ? ak->key.get() : nullptr;
  std::optional<AkSignatureVerifier> ak_verifier;
  if (ak_key != nullptr) {
    ak_verifier.emplace(ak->pub, ak_key);
  }

  // --- Quote ---
  const QuoteEvidence* quote = nullptr;
  std::string want_bank = BankNameFromAlg(want_sel.bank);
  for (const QuoteEvidence& q : e.quotes) {
    if (q.bank == want_bank) {
      quote = &q;
      break;
    }
  }
  ParsedAttest qa;
  if (quote == nullptr) {
    f.Add(Reason::kQuoteMissing, "no quote for bank " + want_bank);
  } else {
    qa = CheckAttest(quote->quote.attest, TPM2_ST_ATTEST_QUOTE, Reason::kQuoteMalformed,
                     Reason::kQuoteNotTpmGenerated, Reason::kQuoteWrongType, "quote", f);
    Result<HashAlg> sig_hash = Error(Layer::kPolicy, "no usable AK public key");
    if (ak_verifier) {
      sig_hash = ak_verifier->Verify(quote->quote.attest, quote->quote.signature);
    }
    if (!sig_hash.ok()) {
      f.Add(Reason::kQuoteSignatureInvalid, sig_hash.error().message());
    }
    if (qa.parsed) {
      result.quote_clock = qa.attest.clockInfo;
      CheckNonce(qa.attest.extraData, options.expected_nonce, Reason::kQuoteNonceMismatch, "quote",
                 f);
      const TPMS_QUOTE_INFO& info = qa.attest.attested.quote;
      CheckSelection(info.pcrSelect, want_sel, f);
      if (sig_hash.ok() && CheckPcrDigest(info, *quote, sig_hash.value(), f)) {
        // From here on the PCR values are authenticated (rats-tpm §3.3 Q10).
        result.quoted_pcrs = quote->pcrs;
        if (policy != nullptr) {
          bool refs_ok = true;
          for (const auto& [pcr, value] : policy->reference_values) {
            auto it = quote->pcrs.find(pcr);
            if (it == quote->pcrs.end()) {
              refs_ok = false;
              f.Add(Reason::kPcrReferenceMismatch,
                    "PCR " + std::to_string(pcr) + " has a reference value but is not quoted");
            } else if (!ConstantTimeEqual(it->second, value)) {
              refs_ok = false;
              f.Add(Reason::kPcrReferenceMismatch, "PCR " + std::to_string(pcr) + " is " +
                                                       HexEncode(it->second) + ", reference " +
                                                       HexEncode(value));
            }
          }
          result.references_checked = refs_ok && !policy->reference_values.empty();
        }
        CheckLogs(e, want_sel.bank, want_sel.mask, quote->pcrs, policy, result, f);
      } else if (e.uefi_log || e.ima_log) {
        f.Add(Reason::kEventLogReplayMismatch,
              "logs not replayed: the PCR values are not verified");
      }
      if (qa.attest.clockInfo.safe != TPM2_YES) {
        f.Add(Reason::kClockNotSafe, "quote clockInfo.safe is NO");
      }
      if (sig_hash.ok() && options.last_clock.has_value()) {
        CheckClock(qa.attest.clockInfo, *options.last_clock, result, f);
      }
    }
  }

  // --- Certified workload key ---
  Result<PublicKeyInfo> key = Error(Layer::kParse, "no key");
  bool creation_ok = false;
  if (e.keys.size() != 1) {
    f.Add(Reason::kKeyMissing,
          "evidence certifies " + std::to_string(e.keys.size()) + " keys, expected exactly 1");
  } else {
    const KeyEvidence& k = e.keys[0];
    key = ParsePublic(k.public_blob, /*need_key=*/false);
    if (!key.ok()) {
      f.Add(Reason::kKeyPublicMalformed, key.error().message());
    } else {
      std::string problems = AttributeProblems(key->pub.objectAttributes, kKeyRequiredAttributes,
                                               kKeyForbiddenAttributes);
      if (!problems.empty()) {
        f.Add(Reason::kKeyAttributes, problems);
      }
    }
    ParsedAttest ca =
        CheckAttest(k.certify.attest, TPM2_ST_ATTEST_CERTIFY, Reason::kCertifyMalformed,
                    Reason::kCertifyNotTpmGenerated, Reason::kCertifyWrongType, "certify", f);
    Result<HashAlg> sig_hash = Error(Layer::kPolicy, "no usable AK public key");
    if (ak_verifier) {
      sig_hash = ak_verifier->Verify(k.certify.attest, k.certify.signature);
    }
    if (!sig_hash.ok()) {
      f.Add(Reason::kCertifySignatureInvalid, sig_hash.error().message());
    }
    if (ca.parsed) {
      const TPMS_ATTEST& c = ca.attest;
      CheckNonce(c.extraData, options.expected_nonce, Reason::kCertifyNonceMismatch, "certify", f);
      const TPMS_CERTIFY_INFO& info = c.attested.certify;
      if (key.ok() &&
          !SameBytes(info.name.name, info.name.size, key->name.data(), key->name.size())) {
        f.Add(Reason::kCertifyNameMismatch,
              "certified Name is not the Name of the presented public area");
      }
      if (info.qualifiedName.size == 0) {
        f.Add(Reason::kCertifyQualifiedNameMissing, "certify qualifiedName is empty");
      }
      if (qa.parsed) {
        const TPMS_ATTEST& q = qa.attest;
        if (!SameBytes(c.qualifiedSigner.name, c.qualifiedSigner.size, q.qualifiedSigner.name,
                       q.qualifiedSigner.size)) {
          f.Add(Reason::kCertifySignerMismatch,
                "certify and quote name different qualified signers");
        }
        if (c.clockInfo.resetCount != q.clockInfo.resetCount ||
            c.clockInfo.restartCount != q.clockInfo.restartCount) {
          f.Add(Reason::kBootMismatch, "certify and quote come from different TPM boots");
        }
      }
    }
    if (k.creation) {
      const size_t before = f.failures().size();
      CheckCreation(*k.creation, key.ok() ? &key.value() : nullptr,
                    ca.parsed ? &ca.attest : nullptr, qa.parsed ? &qa.attest : nullptr,
                    ak_verifier ? &*ak_verifier : nullptr, options, result, f);
      creation_ok = f.failures().size() == before;
    } else if (options.require_creation) {
      f.Add(Reason::kCreationMissing, "the evidence does not certify the key's creation");
    }
  }

  result.failures = std::move(f.failures());
  if (result.failures.empty()) {
    result.verdict = Verdict::kAffirming;
    Result<Bytes> spki = SpkiOf(key->pub, key->key.get());
    if (!spki.ok()) {
      result.failures.push_back(Failure{Reason::kKeyPublicMalformed, spki.error().message()});
      result.verdict = Verdict::kContraindicated;
    } else {
      result.workload_key_spki = std::move(spki).value();
      result.workload_key_name = key->name;
      result.ak_name = ak->name;
      result.ek_certified = result.ak_enrolled && options.enrolled_ek_certified;
      result.creation_certified = creation_ok;
      result.new_clock = ClockState{qa.attest.clockInfo.clock, qa.attest.clockInfo.resetCount,
                                    qa.attest.clockInfo.restartCount};
    }
  }
  if (!result.affirming()) {
    result.creation_certified = false;
    result.creation_parent_name.clear();
    result.creation_pcrs_checked = false;
    result.quoted_pcrs.clear();
    result.event_digests.clear();
    result.new_clock.reset();
  }
  return result;
}

AppraisalResult AppraiseEvidenceJson(std::string_view json, const AppraisalOptions& options) {
  Result<Tpm2Evidence> e = DecodeEvidenceJson(json);
  if (!e.ok()) {
    AppraisalResult r;
    r.failures.push_back(Failure{Reason::kEvidenceMalformed, e.error().message()});
    return r;
  }
  return AppraiseEvidence(e.value(), options);
}

AppraisalResult AppraiseCmw(std::string_view cmw_json, const AppraisalOptions& options) {
  Result<std::string> inner = UnwrapCmw(cmw_json);
  if (!inner.ok()) {
    AppraisalResult r;
    r.failures.push_back(Failure{Reason::kCmwMalformed, inner.error().message()});
    return r;
  }
  return AppraiseEvidenceJson(inner.value(), options);
}

}  // namespace wimse::attest
