// The evidence producer (attester side): TPM2_Quote over the selected PCRs and TPM2_Certify of
// a workload key, both by the AK and both carrying the verifier's nonce, packed as
// tpm2-evidence v1 inside a CMW record (rats-tpm §2.5, §7).
#ifndef WIMSE_ATTEST_EVIDENCE_H_
#define WIMSE_ATTEST_EVIDENCE_H_

#include <string>

#include "attest/evidence_format.h"
#include "attest/verifier.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// Collects evidence for `key` bound to `nonce` (1..32 bytes; longer nonces are refused before
// any TPM command, field case C01 #6).
//
// TPM side effects, all within one TpmContext::Run() (one lock hold): the workload key is
// loaded through the context cache (WorkloadKey::LoadLocked: SRK context-loaded and flushed,
// key left in the cache), the AK is created as an endorsement-hierarchy primary
// (TPM2_CreatePrimary) and flushed before returning on every path; PCRs are read, quoted and
// read again, retried up to 3 times if an extend raced the quote (rats-tpm §6 #3). At most 3
// transient slots are used at once (cache + SRK during the key load, then cache + AK).
// Thread-safe (serialised on the context lock).
Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce,
                                     const PcrBankSelection& pcrs = PcrBankSelection{});

// ProduceEvidence, encoded and wrapped: returns the CMW JSON record text.
Result<std::string> ProduceEvidenceCmw(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                       ByteView nonce,
                                       const PcrBankSelection& pcrs = PcrBankSelection{});

// The AK's public area (marshalled TPM2B_PUBLIC) on this TPM: creates the AK primary, reads its
// public area, flushes it. For enrolment and for exporting the AK public key.
Result<Bytes> ReadAkPublic(tpm::TpmContext& ctx);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_EVIDENCE_H_
