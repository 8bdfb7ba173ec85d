#include "attest/service/csr.h"

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/ecdsa.h"

namespace wimse::service {

namespace {

using Asn1BitStringPtr =
    std::unique_ptr<ASN1_BIT_STRING, OsslDeleter<ASN1_BIT_STRING, ASN1_BIT_STRING_free>>;
using X509AlgorPtr = std::unique_ptr<X509_ALGOR, OsslDeleter<X509_ALGOR, X509_ALGOR_free>>;

}  // namespace

Result<std::string> MakeCsrPem(Signer& key, const std::string& common_name) {
  X509ReqPtr req(X509_REQ_new());
  X509NamePtr name(X509_NAME_new());
  if (!req || !name) return OpenSslError("X509_REQ_new");
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_REQ_set_subject_name(req.get(), name.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.public_key()) != 1) {
    return OpenSslError("building the CSR");
  }
  HashAlg hash = HashAlg::kSha256;
  int sig_nid = NID_ecdsa_with_SHA256;
  bool ec = true;
  switch (key.key_alg()) {
    case KeyAlg::kEcP256:
      break;
    case KeyAlg::kEcP384:
      hash = HashAlg::kSha384;
      sig_nid = NID_ecdsa_with_SHA384;
      break;
    case KeyAlg::kRsa2048:
    case KeyAlg::kRsa3072:
      sig_nid = NID_sha256WithRSAEncryption;
      ec = false;
      break;
  }
  X509AlgorPtr alg(X509_ALGOR_new());
  if (!alg ||
      X509_ALGOR_set0(alg.get(), OBJ_nid2obj(sig_nid), ec ? V_ASN1_UNDEF : V_ASN1_NULL, nullptr) !=
          1 ||
      X509_REQ_set1_signature_algo(req.get(), alg.get()) != 1) {
    return OpenSslError("CSR signature algorithm");
  }
  unsigned char* tbs = nullptr;
  int tbs_len = i2d_re_X509_REQ_tbs(req.get(), &tbs);
  if (tbs_len <= 0) return OpenSslError("encoding the CSR");
  Bytes tbs_bytes(tbs, tbs + tbs_len);
  OPENSSL_free(tbs);
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(hash, tbs_bytes));
  WIMSE_ASSIGN_OR_RETURN(Bytes sig, key.SignDigest(hash, digest));
  if (ec) {
    WIMSE_ASSIGN_OR_RETURN(sig, EcdsaRawToDer(sig));
  }
  Asn1BitStringPtr bits(ASN1_BIT_STRING_new());
  if (!bits || ASN1_BIT_STRING_set(bits.get(), sig.data(), static_cast<int>(sig.size())) != 1) {
    return OpenSslError("CSR signature");
  }
  // A signature has no unused bits; without the flag i2c would derive some from trailing zeros.
  bits->flags = (bits->flags & ~0x07L) | ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits.release());
  if (X509_REQ_verify(req.get(), key.public_key()) != 1) {
    return OpenSslError("the CSR signature made by the key does not verify");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return OpenSslError("PEM_write_bio_X509_REQ");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<X509ReqPtr> ParseAndVerifyCsr(std::string_view pem) {
  if (pem.empty() || pem.size() > 16 * 1024) {
    return Error(Layer::kParse, "csr_malformed: empty or larger than 16 KiB");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509ReqPtr req(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  if (!req) return Error(Layer::kParse, "csr_malformed: not a PEM certification request");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (pub == nullptr) return Error(Layer::kParse, "csr_malformed: no public key");
  if (X509_REQ_verify(req.get(), pub) != 1) {
    ERR_clear_error();
    return Error(Layer::kPolicy, "csr_signature_invalid: the CSR is not signed by its key");
  }
  return req;
}

}  // namespace wimse::service
