#include "x509/certificate.h"

#include <openssl/pem.h>
#include <openssl/rand.h>

namespace wimse::x509 {

namespace {

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
  if (ext == nullptr) return OpenSslError("X509V3_EXT_conf_nid " + value);
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("X509_add_ext");
  return OkStatus();
}

bool HasControlOrComma(const std::string& s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == ',' || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

Result<X509Ptr> IssueCertificate(const CertificateRequest& req, EVP_PKEY* issuer_key,
                                 X509* issuer_cert) {
  if (req.subject_public_key == nullptr || issuer_key == nullptr) {
    return Error(Layer::kUsage, "certificate: missing subject or issuer key");
  }
  // Values go into an X509V3 config string: refuse anything that could inject extra entries.
  if (HasControlOrComma(req.uri_san) || HasControlOrComma(req.dns_san) ||
      HasControlOrComma(req.ip_san)) {
    return Error(Layer::kUsage, "certificate: SAN values must not contain ',' or control bytes");
  }
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return OpenSslError("X509_new");
  uint8_t serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return OpenSslError("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  serial[0] |= 0x01;  // and non-zero, with a fixed length
  BignumPtr bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslError("serial");
  }
  // Backdate a minute for clock skew.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(req.lifetime.count())) ==
          nullptr) {
    return OpenSslError("validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(req.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return OpenSslError("subject CN");
  }
  X509_NAME* issuer_name = issuer_cert != nullptr ? X509_get_subject_name(issuer_cert) : name;
  if (X509_set_issuer_name(cert.get(), issuer_name) != 1 ||
      X509_set_pubkey(cert.get(), req.subject_public_key) != 1) {
    return OpenSslError("issuer/pubkey");
  }
  WIMSE_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer_cert, NID_basic_constraints,
                   req.is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE"));
  WIMSE_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer_cert, NID_key_usage,
                   req.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"));
  if (!req.is_ca) {
    WIMSE_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert, NID_ext_key_usage,
                                       req.server_auth ? "serverAuth,clientAuth" : "clientAuth"));
  }
  WIMSE_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert, NID_subject_key_identifier, "hash"));
  if (issuer_cert != nullptr) {
    WIMSE_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always"));
  }
  std::string san;
  auto append = [&san](const std::string& kind, const std::string& v) {
    if (v.empty()) return;
    if (!san.empty()) san += ",";
    san += kind + ":" + v;
  };
  append("URI", req.uri_san);
  append("DNS", req.dns_san);
  append("IP", req.ip_san);
  if (!san.empty()) {
    // A workload certificate's identity is its URI SAN; the subject DN is informational.
    WIMSE_RETURN_IF_ERROR(AddExtension(cert.get(), issuer_cert, NID_subject_alt_name, san));
  }
  // Sign: the digest is chosen from the issuer key; the signature may happen in a provider
  // (e.g. the TPM through wimsetpm).
  const char* md = "SHA256";
  if (EVP_PKEY_is_a(issuer_key, "EC") && EVP_PKEY_get_bits(issuer_key) == 384) md = "SHA384";
  EvpMdCtxPtr mctx(EVP_MD_CTX_new());
  if (!mctx ||
      EVP_DigestSignInit_ex(mctx.get(), nullptr, md, nullptr, nullptr, issuer_key, nullptr) != 1) {
    return OpenSslError("EVP_DigestSignInit_ex (certificate issuer key)");
  }
  if (X509_sign_ctx(cert.get(), mctx.get()) <= 0) return OpenSslError("X509_sign_ctx");
  return cert;
}

Result<std::string> CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("PEM_write_bio_X509");
  char* p = nullptr;
  long len = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(len));
}

Result<X509Ptr> CertificateFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return OpenSslError("not a PEM certificate");
  return cert;
}

Result<std::string> SingleUriSan(X509* cert) {
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return Error(Layer::kPolicy, "certificate has no subjectAltName");
  std::string uri;
  int count = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    ++count;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
               static_cast<size_t>(ASN1_STRING_length(s)));
  }
  if (count != 1) {
    return Error(Layer::kPolicy,
                 "certificate must carry exactly one URI SAN, has " + std::to_string(count));
  }
  return uri;
}

}  // namespace wimse::x509
