#include "tpm/attestation.h"

#include <tss2/tss2_mu.h>

#include <memory>

namespace wimse::tpm {

namespace {

// ESAPI output buffers are owned by us and freed with Esys_Free.
struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

TPML_PCR_SELECTION Selection(TPM2_ALG_ID bank, uint32_t mask) {
  TPML_PCR_SELECTION sel{};
  sel.count = 1;
  sel.pcrSelections[0].hash = bank;
  sel.pcrSelections[0].sizeofSelect = 3;  // PC Client: 24 PCRs
  sel.pcrSelections[0].pcrSelect[0] = static_cast<uint8_t>(mask);
  sel.pcrSelections[0].pcrSelect[1] = static_cast<uint8_t>(mask >> 8);
  sel.pcrSelections[0].pcrSelect[2] = static_cast<uint8_t>(mask >> 16);
  return sel;
}

Result<TPM2B_DATA> QualifyingData(ByteView nonce) {
  if (nonce.size() > kMaxQualifyingData) {
    return Error(Layer::kUsage, "nonce of " + std::to_string(nonce.size()) +
                                    " bytes is too long for the TPM (at most " +
                                    std::to_string(kMaxQualifyingData) + ")");
  }
  TPM2B_DATA data{};
  data.size = static_cast<uint16_t>(nonce.size());
  std::copy(nonce.begin(), nonce.end(), data.buffer);
  return data;
}

Result<TpmAttestation> ToAttestation(const TPM2B_ATTEST* attest, const TPMT_SIGNATURE* sig) {
  if (attest == nullptr || sig == nullptr || attest->size > sizeof(attest->attestationData)) {
    return Error(Layer::kInternal, "TPM returned no attestation");
  }
  TpmAttestation out;
  out.attest.assign(attest->attestationData, attest->attestationData + attest->size);
  out.signature.resize(sizeof(TPMT_SIGNATURE));
  size_t offset = 0;
  TSS2_RC rc =
      Tss2_MU_TPMT_SIGNATURE_Marshal(sig, out.signature.data(), out.signature.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) {
    return Error(Layer::kInternal, "cannot marshal TPMT_SIGNATURE", rc);
  }
  out.signature.resize(offset);
  return out;
}

}  // namespace

TPM2B_PUBLIC AkTemplateEccP256() {
  TPM2B_PUBLIC t{};
  t.publicArea.type = TPM2_ALG_ECC;
  t.publicArea.nameAlg = TPM2_ALG_SHA256;
  t.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                  TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                  TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  static_assert((TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT) ==
                kAkAttributes);
  TPMS_ECC_PARMS& ecc = t.publicArea.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_NULL;
  ecc.scheme.scheme = TPM2_ALG_ECDSA;
  ecc.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

Result<AttestationKey> CreateAkLocked(ESYS_CONTEXT* esys) {
  TPM2B_PUBLIC in_public = AkTemplateEccP256();
  WIMSE_ASSIGN_OR_RETURN(CreatedPrimary created,
                         CreateEndorsementPrimaryLocked(esys, in_public, "AK"));
  AttestationKey ak;
  ak.handle = std::move(created.handle);
  ak.public_blob = std::move(created.public_blob);
  return ak;
}

Result<std::map<uint32_t, Bytes>> PcrReadLocked(ESYS_CONTEXT* esys, TPM2_ALG_ID bank,
                                                uint32_t mask) {
  std::map<uint32_t, Bytes> values;
  uint32_t remaining = mask & 0xFFFFFF;
  while (remaining != 0) {
    TPML_PCR_SELECTION sel = Selection(bank, remaining);
    UINT32 update_counter = 0;
    TPML_PCR_SELECTION* out_sel_raw = nullptr;
    TPML_DIGEST* digests_raw = nullptr;
    TSS2_RC rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel,
                               &update_counter, &out_sel_raw, &digests_raw);
    EsysPtr<TPML_PCR_SELECTION> out_sel(out_sel_raw);
    EsysPtr<TPML_DIGEST> digests(digests_raw);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError("TPM2_PCR_Read", rc);
    }
    if (!out_sel || !digests || out_sel->count != 1 || out_sel->pcrSelections[0].hash != bank) {
      return Error(Layer::kTpm, "TPM2_PCR_Read did not return the " + std::to_string(bank) +
                                    " bank (not allocated?)");
    }
    const TPMS_PCR_SELECTION& got = out_sel->pcrSelections[0];
    uint32_t next = 0;
    for (uint32_t i = 0; i < 24; ++i) {
      if (!(remaining & (1u << i))) {
        continue;
      }
      if (i / 8 < got.sizeofSelect && (got.pcrSelect[i / 8] & (1u << (i % 8)))) {
        if (next >= digests->count) {
          return Error(Layer::kTpm, "TPM2_PCR_Read returned fewer digests than selected");
        }
        const TPM2B_DIGEST& d = digests->digests[next++];
        values[i] = Bytes(d.buffer, d.buffer + d.size);
        remaining &= ~(1u << i);
      }
    }
    if (next == 0) {
      return Error(Layer::kTpm, "TPM2_PCR_Read returned none of the selected PCRs");
    }
  }
  return values;
}

Result<TpmAttestation> QuoteLocked(ESYS_CONTEXT* esys, ESYS_TR ak, ByteView nonce, TPM2_ALG_ID bank,
                                   uint32_t mask) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_DATA qualifying, QualifyingData(nonce));
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // use the AK's own scheme
  TPML_PCR_SELECTION sel = Selection(bank, mask);
  TPM2B_ATTEST* quoted_raw = nullptr;
  TPMT_SIGNATURE* sig_raw = nullptr;
  TSS2_RC rc = Esys_Quote(esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
                          &scheme, &sel, &quoted_raw, &sig_raw);
  EsysPtr<TPM2B_ATTEST> quoted(quoted_raw);
  EsysPtr<TPMT_SIGNATURE> sig(sig_raw);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_Quote", rc);
  }
  return ToAttestation(quoted.get(), sig.get());
}

Result<TpmAttestation> CertifyLocked(ESYS_CONTEXT* esys, ESYS_TR object, ESYS_TR ak, ByteView nonce,
                                     ESYS_TR object_session) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_DATA qualifying, QualifyingData(nonce));
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;
  TPM2B_ATTEST* certify_raw = nullptr;
  TPMT_SIGNATURE* sig_raw = nullptr;
  TSS2_RC rc = Esys_Certify(esys, object, ak, object_session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            &qualifying, &scheme, &certify_raw, &sig_raw);
  EsysPtr<TPM2B_ATTEST> certify(certify_raw);
  EsysPtr<TPMT_SIGNATURE> sig(sig_raw);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_Certify", rc);
  }
  return ToAttestation(certify.get(), sig.get());
}

namespace {

template <typename T, typename F>
Result<Bytes> MarshalWith(const T& value, F marshal, const char* what) {
  Bytes out(sizeof(T) + 2);
  size_t offset = 0;
  TSS2_RC rc = marshal(&value, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) {
    return Error(Layer::kInternal, std::string("cannot marshal ") + what, rc);
  }
  out.resize(offset);
  return out;
}

template <typename T, typename F>
Result<T> UnmarshalExactly(ByteView bytes, F unmarshal, const char* what) {
  T value{};
  size_t offset = 0;
  TSS2_RC rc = unmarshal(bytes.data(), bytes.size(), &offset, &value);
  if (rc != TSS2_RC_SUCCESS || offset != bytes.size()) {
    return Error(Layer::kParse,
                 std::string("key creation record: ") + what + " does not unmarshal");
  }
  return value;
}

}  // namespace

Result<KeyCreation> MarshalKeyCreation(const TPM2B_CREATION_DATA& data, const TPM2B_DIGEST& hash,
                                       const TPMT_TK_CREATION& ticket) {
  KeyCreation out;
  WIMSE_ASSIGN_OR_RETURN(out.creation_data, MarshalWith(data, Tss2_MU_TPM2B_CREATION_DATA_Marshal,
                                                        "TPM2B_CREATION_DATA"));
  WIMSE_ASSIGN_OR_RETURN(out.creation_hash,
                         MarshalWith(hash, Tss2_MU_TPM2B_DIGEST_Marshal, "TPM2B_DIGEST"));
  WIMSE_ASSIGN_OR_RETURN(out.creation_ticket,
                         MarshalWith(ticket, Tss2_MU_TPMT_TK_CREATION_Marshal, "TPMT_TK_CREATION"));
  return out;
}

Result<TpmAttestation> CertifyCreationLocked(ESYS_CONTEXT* esys, ESYS_TR object, ESYS_TR ak,
                                             ByteView nonce, const KeyCreation& creation) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_DATA qualifying, QualifyingData(nonce));
  WIMSE_ASSIGN_OR_RETURN(TPM2B_DIGEST hash, UnmarshalExactly<TPM2B_DIGEST>(
                                                creation.creation_hash,
                                                Tss2_MU_TPM2B_DIGEST_Unmarshal, "creationHash"));
  WIMSE_ASSIGN_OR_RETURN(
      TPMT_TK_CREATION ticket,
      UnmarshalExactly<TPMT_TK_CREATION>(creation.creation_ticket,
                                         Tss2_MU_TPMT_TK_CREATION_Unmarshal, "creationTicket"));
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;
  TPM2B_ATTEST* info_raw = nullptr;
  TPMT_SIGNATURE* sig_raw = nullptr;
  TSS2_RC rc = Esys_CertifyCreation(esys, ak, object, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &qualifying, &hash, &scheme, &ticket, &info_raw, &sig_raw);
  EsysPtr<TPM2B_ATTEST> info(info_raw);
  EsysPtr<TPMT_SIGNATURE> sig(sig_raw);
  if (rc != TSS2_RC_SUCCESS) {
    // Format-one response codes carry the parameter number above bit 8 (Part 2 §6.6.3).
    if ((rc & TPM2_RC_FMT1) != 0 && (rc & (TPM2_RC_FMT1 | 0x3F)) == TPM2_RC_TICKET) {
      return Error(Layer::kTpm,
                   "TPM2_CertifyCreation: the TPM refused the creation ticket (the key's creation "
                   "record was not made by this TPM for this key and creationHash)",
                   rc);
    }
    return TpmError("TPM2_CertifyCreation", rc);
  }
  return ToAttestation(info.get(), sig.get());
}

}  // namespace wimse::tpm
