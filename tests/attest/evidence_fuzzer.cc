// libFuzzer target (meson -Dfuzz=true with clang) and, linked with fuzz_replay_main.cc, a unit
// test replaying its seed corpus (tests/data/attest/fuzz/evidence). Untrusted evidence through
// every parser on the appraisal path (attest/evidence_format, attest/verifier): the CMW record,
// the tpm2-evidence v1 JSON, and the raw TPM structures (TPM2B_PUBLIC of the AK and of the key,
// TPMS_ATTEST and TPMT_SIGNATURE of the quote and the certify, PCR values, both event logs).
//
// Input: byte 0 selects the mode, the rest is the payload.
//   0: CMW JSON record -> AppraiseCmw
//   1: evidence JSON   -> DecodeEvidenceJson + EncodeEvidenceJson round trip + appraisal
//   2: raw structures: a sequence of pieces, each UINT32 BE length | bytes, in the order
//      nonce, AK TPM2B_PUBLIC, quote TPMS_ATTEST, quote TPMT_SIGNATURE, PCR values (repeated
//      UINT8 index | 32-byte sha256 value), key TPM2B_PUBLIC, certify TPMS_ATTEST, certify
//      TPMT_SIGNATURE, UEFI log (TCG), IMA log (format detected); missing pieces are empty. The
//      expected selection is sha256 over the PCR indices given, so genuine seeds pass the quote
//      checks and mutations reach the deeper ones (digest, signature, names, log replay).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "attest/eventlog.h"
#include "attest/evidence_format.h"
#include "attest/verifier.h"

namespace {

using namespace wimse;
using namespace wimse::attest;

void Appraise(const Tpm2Evidence& e, ByteView nonce, uint32_t mask) {
  AppraisalOptions o;
  o.expected_nonce.assign(nonce.begin(), nonce.end());
  o.allow_unenrolled_ak = true;
  o.now_unix = 1767225600;
  o.expected_pcrs.mask = mask;
  o.last_clock = ClockState{1, 0, 0};
  (void)AppraiseEvidence(e, o);
  // With a policy: allow/deny lists and reference values take the event-digest paths.
  AttestationPolicy p;
  p.pcrs.mask = mask;
  p.denied_event_digests.insert(Bytes(32, 0));
  p.allowed_event_digests.insert(Bytes(32, 1));
  p.reference_values[0] = Bytes(32, 0);
  o.policy = &p;
  (void)AppraiseEvidence(e, o);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  ByteView in(data + 1, size - 1);
  std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
  const Bytes nonce =
      HexDecode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").value();
  switch (data[0] % 3) {
    case 0: {
      AppraisalOptions o;
      o.expected_nonce = nonce;
      o.allow_unenrolled_ak = true;
      (void)AppraiseCmw(text, o);
      break;
    }
    case 1: {
      Result<Tpm2Evidence> e = DecodeEvidenceJson(text);
      if (e.ok()) {
        std::string again = EncodeEvidenceJson(*e);
        Result<Tpm2Evidence> e2 = DecodeEvidenceJson(again);
        if (!e2.ok() || EncodeEvidenceJson(*e2) != again) {
          __builtin_trap();  // encode/decode must round-trip
        }
        uint32_t mask = 0;
        for (const QuoteEvidence& q : e->quotes) {
          for (const auto& [i, v] : q.pcrs) {
            mask |= i < 24 ? (1u << i) : 0;
          }
        }
        Appraise(*e, nonce, mask == 0 ? 0xFF : mask);
      }
      break;
    }
    default: {
      Bytes pieces[10];
      size_t pos = 0;
      for (Bytes& piece : pieces) {
        if (in.size() - pos < 4) {
          break;
        }
        uint32_t len = (uint32_t{in[pos]} << 24) | (uint32_t{in[pos + 1]} << 16) |
                       (uint32_t{in[pos + 2]} << 8) | in[pos + 3];
        pos += 4;
        len = static_cast<uint32_t>(std::min<size_t>(len, in.size() - pos));
        piece.assign(in.begin() + static_cast<long>(pos),
                     in.begin() + static_cast<long>(pos + len));
        pos += len;
      }
      Tpm2Evidence e;
      e.nonce = pieces[0];
      e.ak_public = pieces[1];
      QuoteEvidence q;
      q.quote = SignedAttest{pieces[2], pieces[3]};
      q.bank = "sha256";
      uint32_t mask = 0;
      for (size_t i = 0; i + 33 <= pieces[4].size(); i += 33) {
        uint32_t pcr = pieces[4][i];
        q.pcrs[pcr] = Bytes(pieces[4].begin() + static_cast<long>(i + 1),
                            pieces[4].begin() + static_cast<long>(i + 33));
        mask |= pcr < 24 ? (1u << pcr) : 0;
      }
      e.quotes.push_back(std::move(q));
      e.keys.push_back(KeyEvidence{pieces[5], SignedAttest{pieces[6], pieces[7]}});
      if (!pieces[8].empty()) {
        e.uefi_log = LogEvidence{"tcg-pc-client-crypto-agile", pieces[8]};
      }
      if (!pieces[9].empty()) {
        e.ima_log = LogEvidence{std::string(LogFormatName(DetectLogFormat(pieces[9]))), pieces[9]};
      }
      Appraise(e, e.nonce, mask == 0 ? 0xFF : mask);
      break;
    }
  }
  return 0;
}
