#include "attest/enrollment.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "attest/credential.h"
#include "attest/verifier.h"
#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "jose/base64url.h"
#include "jose/json.h"

namespace wimse::attest {

namespace {

using jose::Json;

Error Fail(const std::string& code, const std::string& detail) {
  return Error(Layer::kPolicy, code + ": " + detail);
}

Result<Bytes> Sha256(ByteView data) { return Digest(HashAlg::kSha256, data); }

Result<X509Ptr> ParseDer(ByteView der) {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    ERR_clear_error();
    return Error(Layer::kParse, "not one DER certificate");
  }
  return cert;
}

using X509StackPtr =
    std::unique_ptr<STACK_OF(X509), OsslDeleter<STACK_OF(X509), [](STACK_OF(X509) * s) {
                      sk_X509_pop_free(s, X509_free);
                    }>>;

// Validates `leaf` up to one of `roots` (never a root from the attester), with `untrusted`
// intermediates; no partial chains; purpose "any" (EK certs carry EKU 2.23.133.8.1).
Status VerifyEkChain(X509* leaf, const std::vector<Bytes>& roots,
                     const std::vector<Bytes>& untrusted, int64_t now_unix) {
  if (roots.empty()) {
    return Fail("ek_chain_invalid", "no EK roots configured");
  }
  X509StorePtr store(X509_STORE_new());
  for (const Bytes& der : roots) {
    WIMSE_ASSIGN_OR_RETURN(X509Ptr root, ParseDer(der));
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) {
      return OpenSslError("X509_STORE_add_cert");
    }
  }
  X509StackPtr chain(sk_X509_new_null());
  for (const Bytes& der : untrusted) {
    WIMSE_ASSIGN_OR_RETURN(X509Ptr c, ParseDer(der));
    sk_X509_push(chain.get(), c.release());
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain.get()) != 1) {
    return OpenSslError("X509_STORE_CTX_init");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_ANY);
  if (now_unix > 0) {
    X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now_unix));
  } else {
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
  }
  int rc = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (rc != 1) {
    return Fail("ek_chain_invalid", X509_verify_cert_error_string(err));
  }
  return OkStatus();
}

std::string IssuerText(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_issuer_name(cert), buf, sizeof(buf));
  return buf;
}

// The shape MakeCredential relies on (rats-tpm §3.5 E1).
Status CheckEkShape(const TPMT_PUBLIC& ek) {
  constexpr uint32_t kNeed = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                             TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
                             TPMA_OBJECT_DECRYPT;
  if ((ek.objectAttributes & kNeed) != kNeed || (ek.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT)) {
    return Fail("ek_not_tcg_template",
                "EK is not a fixedTPM|fixedParent|sensitiveDataOrigin restricted decryption key");
  }
  const TPMT_SYM_DEF_OBJECT& sym = ek.type == TPM2_ALG_RSA ? ek.parameters.rsaDetail.symmetric
                                                           : ek.parameters.eccDetail.symmetric;
  if ((ek.type != TPM2_ALG_RSA && ek.type != TPM2_ALG_ECC) || sym.algorithm != TPM2_ALG_AES ||
      sym.mode.aes != TPM2_ALG_CFB) {
    return Fail("ek_not_tcg_template", "EK is not RSA/ECC with AES-CFB");
  }
  return OkStatus();
}

Result<Bytes> BytesOf(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return Error(Layer::kParse, std::string("request_malformed: ") + name + " missing");
  }
  Result<Bytes> b = jose::Base64UrlDecode(it->get<std::string>());
  if (!b.ok()) {
    return Error(Layer::kParse,
                 std::string("request_malformed: ") + name + ": " + b.error().message());
  }
  return b;
}

Result<std::string> StringOf(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return Error(Layer::kParse, std::string("request_malformed: ") + name + " missing");
  }
  return it->get<std::string>();
}

constexpr jose::JsonLimits kLimits{1 << 20, 8};

Json RequestJson(const EnrollmentRequest& r) {
  Json chain = Json::array();
  for (const Bytes& c : r.ek_chain) {
    chain.push_back(jose::Base64UrlEncode(c));
  }
  return Json{{"profile", kEnrollmentRequestProfile},
              {"identity", r.identity},
              {"ek_public", jose::Base64UrlEncode(r.ek_public)},
              {"ek_cert", jose::Base64UrlEncode(r.ek_cert)},
              {"ek_chain", chain},
              {"ak_public", jose::Base64UrlEncode(r.ak_public)}};
}

Result<EnrollmentRequest> RequestFromJson(const Json& j) {
  EnrollmentRequest r;
  WIMSE_ASSIGN_OR_RETURN(std::string profile, StringOf(j, "profile"));
  if (profile != kEnrollmentRequestProfile) {
    return Error(Layer::kParse, "request_malformed: wrong profile");
  }
  WIMSE_ASSIGN_OR_RETURN(r.identity, StringOf(j, "identity"));
  WIMSE_ASSIGN_OR_RETURN(r.ek_public, BytesOf(j, "ek_public"));
  WIMSE_ASSIGN_OR_RETURN(r.ek_cert, BytesOf(j, "ek_cert"));
  WIMSE_ASSIGN_OR_RETURN(r.ak_public, BytesOf(j, "ak_public"));
  auto chain = j.find("ek_chain");
  if (chain != j.end()) {
    if (!chain->is_array() || chain->size() > 8) {
      return Error(Layer::kParse, "request_malformed: ek_chain");
    }
    for (const Json& c : *chain) {
      if (!c.is_string()) {
        return Error(Layer::kParse, "request_malformed: ek_chain");
      }
      WIMSE_ASSIGN_OR_RETURN(Bytes der, jose::Base64UrlDecode(c.get<std::string>()));
      r.ek_chain.push_back(std::move(der));
    }
  }
  return r;
}

Json RecordJson(const EnrollmentRecord& r) {
  return Json{{"identity", r.identity},
              {"ak_public", jose::Base64UrlEncode(r.ak_public)},
              {"ak_name", HexEncode(r.ak_name)},
              {"ek_public_sha256", HexEncode(r.ek_public_sha256)},
              {"ek_cert_sha256", HexEncode(r.ek_cert_sha256)},
              {"ek_subject", r.ek_subject}};
}

Result<Bytes> HexOf(const Json& obj, const char* name) {
  WIMSE_ASSIGN_OR_RETURN(std::string s, StringOf(obj, name));
  return HexDecode(s);
}

Result<EnrollmentRecord> RecordFromJson(const Json& j) {
  if (!j.is_object()) {
    return Error(Layer::kParse, "registry entry is not an object");
  }
  EnrollmentRecord r;
  WIMSE_ASSIGN_OR_RETURN(r.identity, StringOf(j, "identity"));
  WIMSE_ASSIGN_OR_RETURN(r.ak_public, BytesOf(j, "ak_public"));
  WIMSE_ASSIGN_OR_RETURN(r.ak_name, HexOf(j, "ak_name"));
  WIMSE_ASSIGN_OR_RETURN(r.ek_public_sha256, HexOf(j, "ek_public_sha256"));
  WIMSE_ASSIGN_OR_RETURN(r.ek_cert_sha256, HexOf(j, "ek_cert_sha256"));
  WIMSE_ASSIGN_OR_RETURN(r.ek_subject, StringOf(j, "ek_subject"));
  return r;
}

}  // namespace

Status CheckTakeover(const EnrollmentRecord* existing, std::string_view identity,
                     ByteView ek_public_sha256, ByteView ak_name) {
  if (existing == nullptr || existing->identity != identity) {
    return OkStatus();
  }
  if (!ConstantTimeEqual(existing->ek_public_sha256, ek_public_sha256)) {
    return Fail("identity_enrolled_to_other_tpm",
                "\"" + std::string(identity) +
                    "\" is enrolled with EK sha256:" + HexEncode(existing->ek_public_sha256));
  }
  if (!ConstantTimeEqual(existing->ak_name, ak_name)) {
    return Fail("ak_changed", "\"" + std::string(identity) + "\" is enrolled with AK " +
                                  HexEncode(existing->ak_name));
  }
  return OkStatus();
}

Result<std::pair<EnrollmentChallenge, PendingEnrollment>> BeginEnrollment(
    const EnrollmentRequest& request, const EnrollmentPolicy& policy,
    const EnrollmentRecord* existing) {
  if (request.identity.empty() || request.identity.size() > 1024) {
    return Fail("request_malformed", "identity must be 1..1024 bytes");
  }
  // EK.
  Result<TPM2B_PUBLIC> ek = UnmarshalTpm2bPublic(request.ek_public);
  if (!ek.ok()) {
    return Fail("ek_public_malformed", ek.error().message());
  }
  WIMSE_RETURN_IF_ERROR(CheckEkShape(ek->publicArea));
  Result<EvpPkeyPtr> ek_key = PublicKeyFromTpmPublic(ek->publicArea);
  if (!ek_key.ok()) {
    return Fail("ek_public_malformed", ek_key.error().message());
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes ek_hash, Sha256(request.ek_public));
  if (request.ek_cert.empty()) {
    bool allowed = false;
    for (const std::string& h : policy.allowed_ek_sha256) {
      allowed = allowed || h == HexEncode(ek_hash);
    }
    if (!allowed) {
      return Fail("ek_not_allowed", "no EK certificate and EK sha256:" + HexEncode(ek_hash) +
                                        " is not on the allowlist");
    }
  } else {
    Result<X509Ptr> cert = ParseDer(request.ek_cert);
    if (!cert.ok()) {
      return Fail("ek_cert_malformed", cert.error().message());
    }
    std::vector<Bytes> untrusted = request.ek_chain;
    untrusted.insert(untrusted.end(), policy.ek_intermediates.begin(),
                     policy.ek_intermediates.end());
    WIMSE_RETURN_IF_ERROR(VerifyEkChain(cert->get(), policy.ek_roots, untrusted, policy.now_unix));
    EVP_PKEY* cert_key = X509_get0_pubkey(cert->get());
    if (cert_key == nullptr || EVP_PKEY_eq(cert_key, ek_key->get()) != 1) {
      ERR_clear_error();
      return Fail("ek_cert_key_mismatch", "the EK certificate is for another key");
    }
  }
  // AK.
  Result<TPM2B_PUBLIC> ak = UnmarshalTpm2bPublic(request.ak_public);
  if (!ak.ok()) {
    return Fail("ak_public_malformed", ak.error().message());
  }
  std::string problems = AkPolicyProblems(ak->publicArea);
  if (!problems.empty()) {
    return Error(Layer::kPolicy, problems);
  }
  if (!PublicKeyFromTpmPublic(ak->publicArea).ok()) {
    return Fail("ak_public_malformed", "unusable AK key");
  }
  // Name over the bytes received (rats-tpm §3.1), with the AK's own nameAlg.
  WIMSE_ASSIGN_OR_RETURN(HashAlg name_hash, HashAlgFromTpm(ak->publicArea.nameAlg));
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(name_hash, ByteView(request.ak_public).subspan(2)));
  Bytes ak_name{static_cast<uint8_t>(ak->publicArea.nameAlg >> 8),
                static_cast<uint8_t>(ak->publicArea.nameAlg)};
  ak_name.insert(ak_name.end(), digest.begin(), digest.end());
  WIMSE_RETURN_IF_ERROR(CheckTakeover(existing, request.identity, ek_hash, ak_name));

  Bytes credential(32);
  if (RAND_bytes(credential.data(), static_cast<int>(credential.size())) != 1) {
    return OpenSslError("RAND_bytes");
  }
  SecretBytes secret_credential(credential);
  std::fill(credential.begin(), credential.end(), uint8_t{0});
  WIMSE_ASSIGN_OR_RETURN(MadeCredential made,
                         MakeCredential(request.ek_public, ak_name, secret_credential.view()));
  PendingEnrollment pending;
  pending.request = request;
  WIMSE_ASSIGN_OR_RETURN(pending.credential_sha256, Sha256(secret_credential.view()));
  return std::make_pair(
      EnrollmentChallenge{std::move(made.credential_blob), std::move(made.secret)},
      std::move(pending));
}

Result<EnrollmentRecord> FinishEnrollment(const PendingEnrollment& pending, ByteView answer,
                                          const EnrollmentRecord* existing) {
  WIMSE_ASSIGN_OR_RETURN(Bytes answer_hash, Sha256(answer));
  if (pending.credential_sha256.size() != 32 ||
      !ConstantTimeEqual(answer_hash, pending.credential_sha256)) {
    return Fail("activation_failed", "the answer is not the credential");
  }
  const EnrollmentRequest& req = pending.request;
  EnrollmentRecord record;
  record.identity = req.identity;
  record.ak_public = req.ak_public;
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC ak, UnmarshalTpm2bPublic(req.ak_public));
  WIMSE_ASSIGN_OR_RETURN(HashAlg name_hash, HashAlgFromTpm(ak.publicArea.nameAlg));
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(name_hash, ByteView(req.ak_public).subspan(2)));
  record.ak_name = {static_cast<uint8_t>(ak.publicArea.nameAlg >> 8),
                    static_cast<uint8_t>(ak.publicArea.nameAlg)};
  record.ak_name.insert(record.ak_name.end(), digest.begin(), digest.end());
  WIMSE_ASSIGN_OR_RETURN(record.ek_public_sha256, Sha256(req.ek_public));
  if (!req.ek_cert.empty()) {
    WIMSE_ASSIGN_OR_RETURN(record.ek_cert_sha256, Sha256(req.ek_cert));
    Result<X509Ptr> cert = ParseDer(req.ek_cert);
    if (cert.ok()) {
      record.ek_subject = "issuer " + IssuerText(cert->get());
    }
  }
  WIMSE_RETURN_IF_ERROR(
      CheckTakeover(existing, record.identity, record.ek_public_sha256, record.ak_name));
  return record;
}

std::string EncodeEnrollmentRequest(const EnrollmentRequest& r) {
  return jose::SerializeJson(RequestJson(r));
}

Result<EnrollmentRequest> DecodeEnrollmentRequest(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json j, jose::ParseJsonObject(json, kLimits));
  return RequestFromJson(j);
}

std::string EncodeEnrollmentChallenge(const EnrollmentChallenge& c) {
  return jose::SerializeJson(Json{{"profile", kEnrollmentChallengeProfile},
                                  {"credential_blob", jose::Base64UrlEncode(c.credential_blob)},
                                  {"secret", jose::Base64UrlEncode(c.secret)}});
}

Result<EnrollmentChallenge> DecodeEnrollmentChallenge(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json j, jose::ParseJsonObject(json, kLimits));
  WIMSE_ASSIGN_OR_RETURN(std::string profile, StringOf(j, "profile"));
  if (profile != kEnrollmentChallengeProfile) {
    return Error(Layer::kParse, "challenge has the wrong profile");
  }
  EnrollmentChallenge c;
  WIMSE_ASSIGN_OR_RETURN(c.credential_blob, BytesOf(j, "credential_blob"));
  WIMSE_ASSIGN_OR_RETURN(c.secret, BytesOf(j, "secret"));
  return c;
}

std::string EncodePendingEnrollment(const PendingEnrollment& p) {
  return jose::SerializeJson(Json{{"request", RequestJson(p.request)},
                                  {"credential_sha256", HexEncode(p.credential_sha256)}});
}

Result<PendingEnrollment> DecodePendingEnrollment(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json j, jose::ParseJsonObject(json, kLimits));
  PendingEnrollment p;
  auto req = j.find("request");
  if (req == j.end() || !req->is_object()) {
    return Error(Layer::kParse, "pending enrolment has no request");
  }
  WIMSE_ASSIGN_OR_RETURN(p.request, RequestFromJson(*req));
  WIMSE_ASSIGN_OR_RETURN(p.credential_sha256, HexOf(j, "credential_sha256"));
  return p;
}

std::string EncodeRegistry(const EnrollmentRegistry& registry) {
  Json j = Json::object();
  for (const auto& [id, rec] : registry) {
    j[id] = RecordJson(rec);
  }
  return j.dump(2) + "\n";
}

Result<EnrollmentRegistry> DecodeRegistry(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json j, jose::ParseJsonObject(json, jose::JsonLimits{16 << 20, 8}));
  EnrollmentRegistry out;
  for (const auto& [id, value] : j.items()) {
    WIMSE_ASSIGN_OR_RETURN(EnrollmentRecord r, RecordFromJson(value));
    if (r.identity != id) {
      return Error(Layer::kParse, "registry entry \"" + id + "\" names another identity");
    }
    out[id] = std::move(r);
  }
  return out;
}

}  // namespace wimse::attest
