// The inputs of a bare TPM2_Sign of a SHA-256 digest with ECDSA and a NULL hash-check ticket,
// as the benchmarks send it when they measure the TPM's own limit (no wimse-tpm code between
// the loop and Esys_Sign). Shared by key_bench and tokens_bench so both measure the same
// command.
#ifndef WIMSE_BENCH_RAW_SIGN_H_
#define WIMSE_BENCH_RAW_SIGN_H_

#include <tss2/tss2_tpm2_types.h>

#include <algorithm>

#include "util/bytes.h"

namespace wimse::bench {

struct RawSignInputs {
  explicit RawSignInputs(const Bytes& sha256_digest) {
    digest.size = static_cast<UINT16>(std::min(sha256_digest.size(), sizeof(digest.buffer)));
    std::copy(sha256_digest.begin(), sha256_digest.begin() + digest.size, digest.buffer);
    scheme.scheme = TPM2_ALG_ECDSA;
    scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    ticket.tag = TPM2_ST_HASHCHECK;
    ticket.hierarchy = TPM2_RH_NULL;
  }
  TPM2B_DIGEST digest{};
  TPMT_SIG_SCHEME scheme{};
  TPMT_TK_HASHCHECK ticket{};
};

}  // namespace wimse::bench

#endif  // WIMSE_BENCH_RAW_SIGN_H_
