// X.509 workload certificates (WIMSE WIC profile, skeleton): one URI SAN, short lifetime,
// signed by an issuer key held in any OpenSSL provider (a software key, or a TPM key loaded
// through wimsetpm), so the same code serves a software CA and a TPM-backed CA.
#ifndef WIMSE_X509_CERTIFICATE_H_
#define WIMSE_X509_CERTIFICATE_H_

#include <chrono>
#include <string>

#include "crypto/ossl.h"
#include "util/result.h"

namespace wimse::x509 {

struct CertificateRequest {
  EVP_PKEY* subject_public_key = nullptr;  // borrowed
  std::string common_name;
  std::string uri_san;  // the workload identifier; empty for a CA
  std::chrono::seconds lifetime{3600};
  bool is_ca = false;
  bool server_auth = false;  // add id-kp-serverAuth (else clientAuth only)
  std::string dns_san;       // optional DNS SAN (server certificates)
  std::string ip_san;        // optional IP SAN (server certificates)
};

// Issues a certificate for `req` signed by `issuer_key` (which must carry a private key in
// some provider). `issuer_cert` is null for a self-signed certificate (then the subject is the
// issuer and `issuer_key` must match the subject key). Serial: 128 random bits. Signature:
// ecdsa-with-SHA256/384 or sha256WithRSAEncryption, chosen by the issuer key.
Result<X509Ptr> IssueCertificate(const CertificateRequest& req, EVP_PKEY* issuer_key,
                                 X509* issuer_cert);

Result<std::string> CertificateToPem(X509* cert);
Result<X509Ptr> CertificateFromPem(std::string_view pem);

// The single URI SAN of `cert`, or an error when there is none or more than one.
Result<std::string> SingleUriSan(X509* cert);

}  // namespace wimse::x509

#endif  // WIMSE_X509_CERTIFICATE_H_
