// Builds synthetic event logs for tests and the benchmark: a TCG PC Client crypto-agile log
// (Spec ID Event03 header with sha1 + sha256, TCG_PCR_EVENT2 records whose digests are the
// hashes of their data) and IMA ima-ng logs (binary and ASCII). Test-only code.
#ifndef WIMSE_TESTS_ATTEST_LOG_BUILDER_H_
#define WIMSE_TESTS_ATTEST_LOG_BUILDER_H_

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstring>
#include <string>
#include <vector>

#include "util/bytes.h"

namespace wimse::attest::testing {

inline Bytes Md(const char* name, ByteView data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  EVP_Q_digest(nullptr, name, nullptr, data.data(), data.size(), out, &len);
  return Bytes(out, out + len);
}

inline void Le32(Bytes& b, uint32_t v) {
  for (int s = 0; s < 32; s += 8) {
    b.push_back(static_cast<uint8_t>(v >> s));
  }
}
inline void Le16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}

struct BuiltEvent {
  uint32_t pcr;
  uint32_t type;
  Bytes data;
  Bytes sha1;
  Bytes sha256;
};

class TcgLogBuilder {
 public:
  TcgLogBuilder() {
    // TCG_PCR_EVENT: PCR 0, EV_NO_ACTION, 20 zero bytes, TCG_EfiSpecIDEvent.
    Bytes spec;
    const char sig[16] = "Spec ID Event03";
    spec.insert(spec.end(), sig, sig + 16);
    Le32(spec, 0);      // platformClass
    spec.push_back(0);  // specVersionMinor
    spec.push_back(2);  // specVersionMajor
    spec.push_back(0);  // errata
    spec.push_back(2);  // uintnSize
    Le32(spec, 2);      // numberOfAlgorithms
    Le16(spec, TPM2_ALG_SHA1);
    Le16(spec, 20);
    Le16(spec, TPM2_ALG_SHA256);
    Le16(spec, 32);
    spec.push_back(0);  // vendorInfoSize
    Le32(log_, 0);
    Le32(log_, 3);
    log_.insert(log_.end(), 20, 0);
    Le32(log_, static_cast<uint32_t>(spec.size()));
    log_.insert(log_.end(), spec.begin(), spec.end());
  }
  // Adds an event whose digests are SHA-1/SHA-256 of `data`.
  void Add(uint32_t pcr, uint32_t type, std::string_view data) {
    BuiltEvent e{pcr, type, Bytes(data.begin(), data.end()), {}, {}};
    e.sha1 = Md("SHA1", e.data);
    e.sha256 = Md("SHA256", e.data);
    Le32(log_, pcr);
    Le32(log_, type);
    Le32(log_, 2);
    Le16(log_, TPM2_ALG_SHA1);
    log_.insert(log_.end(), e.sha1.begin(), e.sha1.end());
    Le16(log_, TPM2_ALG_SHA256);
    log_.insert(log_.end(), e.sha256.begin(), e.sha256.end());
    Le32(log_, static_cast<uint32_t>(e.data.size()));
    log_.insert(log_.end(), e.data.begin(), e.data.end());
    events_.push_back(std::move(e));
  }
  const Bytes& bytes() const { return log_; }
  const std::vector<BuiltEvent>& events() const { return events_; }
  // Offset of the sha256 digest of event `i` in bytes() (to corrupt it in tests).
  size_t Sha256Offset(size_t i) const {
    size_t off = 32 + SpecSize();
    for (size_t k = 0; k < i; ++k) {
      off += 12 + 2 + 20 + 2 + 32 + 4 + events_[k].data.size();
    }
    return off + 12 + 2 + 20 + 2;
  }

 private:
  size_t SpecSize() const { return 16 + 4 + 4 + 4 + 8 + 1; }
  Bytes log_;
  std::vector<BuiltEvent> events_;
};

// One ima-ng entry: template data, its SHA-1 (template hash) and the ASCII line.
struct ImaEntry {
  Bytes template_data;
  Bytes template_sha1;
  Bytes file_sha256;
  std::string path;
  uint32_t pcr = 10;
  bool violation = false;  // template hash all zeros in the log; extends all-ones
};

// What the entry extends into the sha256 bank.
inline Bytes ImaSha256Extend(const ImaEntry& e) {
  return e.violation ? Bytes(32, 0xff) : Md("SHA256", e.template_data);
}

// A violation entry (IMA's ToMToU / open-writers record) for `path`.
inline ImaEntry MakeImaViolation(const std::string& path);

inline ImaEntry MakeImaEntry(const std::string& path, std::string_view content) {
  ImaEntry e;
  e.path = path;
  e.file_sha256 = Md("SHA256", AsBytes(content));
  Bytes dng{'s', 'h', 'a', '2', '5', '6', ':', 0};
  dng.insert(dng.end(), e.file_sha256.begin(), e.file_sha256.end());
  Bytes nng(path.begin(), path.end());
  nng.push_back(0);
  Le32(e.template_data, static_cast<uint32_t>(dng.size()));
  e.template_data.insert(e.template_data.end(), dng.begin(), dng.end());
  Le32(e.template_data, static_cast<uint32_t>(nng.size()));
  e.template_data.insert(e.template_data.end(), nng.begin(), nng.end());
  e.template_sha1 = Md("SHA1", e.template_data);
  return e;
}

inline ImaEntry MakeImaViolation(const std::string& path) {
  ImaEntry e = MakeImaEntry(path, "");
  e.violation = true;
  e.template_sha1 = Bytes(20, 0);
  return e;
}

inline Bytes ImaBinary(const std::vector<ImaEntry>& entries) {
  Bytes out;
  for (const ImaEntry& e : entries) {
    Le32(out, e.pcr);
    out.insert(out.end(), e.template_sha1.begin(), e.template_sha1.end());
    Le32(out, 6);
    const char* name = "ima-ng";
    out.insert(out.end(), name, name + 6);
    Le32(out, static_cast<uint32_t>(e.template_data.size()));
    out.insert(out.end(), e.template_data.begin(), e.template_data.end());
  }
  return out;
}

inline std::string ImaAscii(const std::vector<ImaEntry>& entries) {
  std::string out;
  for (const ImaEntry& e : entries) {
    out += std::to_string(e.pcr) + " " + HexEncode(e.template_sha1) +
           " ima-ng sha256:" + HexEncode(e.file_sha256) + " " + e.path + "\n";
  }
  return out;
}

}  // namespace wimse::attest::testing

#endif  // WIMSE_TESTS_ATTEST_LOG_BUILDER_H_
