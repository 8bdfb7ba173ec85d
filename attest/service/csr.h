// PKCS#10 certification requests made with any Signer (a TPM workload key signs the request's
// TBS digest in the TPM; no provider needed), and their strict parsing on the service side.
#ifndef WIMSE_ATTEST_SERVICE_CSR_H_
#define WIMSE_ATTEST_SERVICE_CSR_H_

#include <string>
#include <string_view>

#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "util/result.h"

namespace wimse::service {

// Makes a PEM CSR for `key`'s public key with subject CN=`common_name`, signed by `key`
// (ECDSA with SHA-256 for P-256, SHA-384 for P-384, RSA PKCS#1 v1.5 with SHA-256). One
// SignDigest call (a TPM2_Sign for a TpmSigner). Thread-safe if the signer is.
Result<std::string> MakeCsrPem(Signer& key, const std::string& common_name);

// Parses a PEM CSR (at most 16 KiB), checks its self-signature, and returns it. Errors are
// Layer::kParse (malformed) or kPolicy ("csr_signature_invalid").
Result<X509ReqPtr> ParseAndVerifyCsr(std::string_view pem);

}  // namespace wimse::service

#endif  // WIMSE_ATTEST_SERVICE_CSR_H_
