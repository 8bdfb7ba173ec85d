#include "attest/eventlog.h"

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstring>

#include "crypto/ossl.h"

namespace wimse::attest {

namespace {

Error LogError(const std::string& what) { return Error(Layer::kParse, "event log: " + what); }

const char* MdName(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA1:
      return "SHA1";
    case TPM2_ALG_SHA256:
      return "SHA256";
    case TPM2_ALG_SHA384:
      return "SHA384";
    case TPM2_ALG_SHA512:
      return "SHA512";
    default:
      return nullptr;
  }
}

Result<Bytes> HashBank(uint16_t bank, ByteView data) {
  const char* name = MdName(bank);
  if (name == nullptr) {
    return LogError("unsupported bank");
  }
  uint8_t out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_Q_digest(nullptr, name, nullptr, data.data(), data.size(), out, &len) != 1) {
    return OpenSslError("digest");
  }
  return Bytes(out, out + len);
}

// Bounds-checked little-endian reader.
class Reader {
 public:
  explicit Reader(ByteView b) : b_(b) {}
  size_t remaining() const { return b_.size() - pos_; }
  size_t pos() const { return pos_; }
  bool U32(uint32_t& v) {
    if (remaining() < 4) {
      return false;
    }
    v = uint32_t{b_[pos_]} | (uint32_t{b_[pos_ + 1]} << 8) | (uint32_t{b_[pos_ + 2]} << 16) |
        (uint32_t{b_[pos_ + 3]} << 24);
    pos_ += 4;
    return true;
  }
  bool U16(uint16_t& v) {
    if (remaining() < 2) {
      return false;
    }
    v = static_cast<uint16_t>(b_[pos_] | (b_[pos_ + 1] << 8));
    pos_ += 2;
    return true;
  }
  bool U8(uint8_t& v) {
    if (remaining() < 1) {
      return false;
    }
    v = b_[pos_++];
    return true;
  }
  bool Take(size_t n, ByteView& out) {
    if (remaining() < n) {
      return false;
    }
    out = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  ByteView b_;
  size_t pos_ = 0;
};

constexpr char kSpecIdSignature[] = "Spec ID Event03";  // 16 bytes with the NUL
constexpr char kStartupLocality[] = "StartupLocality";  // 16 bytes with the NUL

}  // namespace

std::string_view LogFormatName(LogFormat f) {
  switch (f) {
    case LogFormat::kTcgPcClient:
      return "tcg-pc-client-crypto-agile";
    case LogFormat::kImaBinary:
      return "ima-binary";
    case LogFormat::kImaAscii:
      return "ima-ascii";
  }
  return "unknown";
}

Result<LogFormat> LogFormatFromName(std::string_view name) {
  for (LogFormat f : {LogFormat::kTcgPcClient, LogFormat::kImaBinary, LogFormat::kImaAscii}) {
    if (name == LogFormatName(f)) {
      return f;
    }
  }
  return LogError("unknown format \"" + std::string(name) + "\"");
}

size_t BankDigestSize(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA1:
      return 20;
    case TPM2_ALG_SHA256:
      return 32;
    case TPM2_ALG_SHA384:
      return 48;
    case TPM2_ALG_SHA512:
      return 64;
    default:
      return 0;
  }
}

Result<Bytes> ExtendPcr(uint16_t bank, ByteView old_value, ByteView digest) {
  Bytes in(old_value.begin(), old_value.end());
  in.insert(in.end(), digest.begin(), digest.end());
  return HashBank(bank, in);
}

Bytes InitialPcrValue(uint32_t index, uint16_t bank) {
  return Bytes(BankDigestSize(bank), (index >= 17 && index <= 22) ? 0xFF : 0x00);
}

Result<EventLog> ParseTcgLog(ByteView log, const LogLimits& limits) {
  if (log.size() > limits.max_bytes) {
    return LogError("larger than " + std::to_string(limits.max_bytes) + " bytes");
  }
  Reader r(log);
  EventLog out;
  out.format = LogFormat::kTcgPcClient;
  // First event: TCG_PCR_EVENT (SHA-1 format) carrying TCG_EfiSpecIDEvent.
  uint32_t pcr = 0;
  uint32_t type = 0;
  uint32_t size = 0;
  ByteView digest;
  ByteView data;
  if (!r.U32(pcr) || !r.U32(type) || !r.Take(20, digest) || !r.U32(size) ||
      size > limits.max_event_data || !r.Take(size, data)) {
    return LogError("truncated first event");
  }
  if (pcr != 0 || type != kEvNoAction || data.size() < 16 + 4 + 4 + 4 ||
      std::memcmp(data.data(), kSpecIdSignature, 16) != 0) {
    return LogError("no Spec ID Event03 header (SHA-1-only logs are not supported)");
  }
  Reader s(data.subspan(16));
  uint32_t platform_class = 0;
  uint8_t minor = 0, major = 0, errata = 0, uintn = 0;
  uint32_t num_algs = 0;
  if (!s.U32(platform_class) || !s.U8(minor) || !s.U8(major) || !s.U8(errata) || !s.U8(uintn) ||
      !s.U32(num_algs) || num_algs == 0 || num_algs > 16) {
    return LogError("malformed Spec ID event");
  }
  for (uint32_t i = 0; i < num_algs; ++i) {
    uint16_t alg = 0, dsize = 0;
    if (!s.U16(alg) || !s.U16(dsize) || dsize == 0 || dsize > 64) {
      return LogError("malformed Spec ID algorithm table");
    }
    size_t known = BankDigestSize(alg);
    if (known != 0 && known != dsize) {
      return LogError("Spec ID digest size does not match its algorithm");
    }
    out.algorithms.emplace_back(alg, dsize);
  }
  uint8_t vendor_size = 0;
  ByteView vendor;
  if (!s.U8(vendor_size) || !s.Take(vendor_size, vendor) || s.remaining() != 0) {
    return LogError("malformed Spec ID vendor info");
  }
  // TCG_PCR_EVENT2 records.
  while (r.remaining() > 0) {
    if (out.events.size() >= limits.max_events) {
      return LogError("more than " + std::to_string(limits.max_events) + " events");
    }
    LogEvent e;
    uint32_t count = 0;
    if (!r.U32(e.pcr) || !r.U32(e.type) || !r.U32(count)) {
      return LogError("truncated event header at byte " + std::to_string(r.pos()));
    }
    if (e.pcr >= TPM2_MAX_PCRS) {
      return LogError("event for PCR " + std::to_string(e.pcr));
    }
    if (count == 0 || count > out.algorithms.size()) {
      return LogError("event digest count " + std::to_string(count));
    }
    for (uint32_t i = 0; i < count; ++i) {
      uint16_t alg = 0;
      if (!r.U16(alg)) {
        return LogError("truncated digest");
      }
      size_t dsize = 0;
      for (const auto& [a, sz] : out.algorithms) {
        if (a == alg) {
          dsize = sz;
        }
      }
      if (dsize == 0) {
        return LogError("digest algorithm 0x" + std::to_string(alg) + " not in the Spec ID event");
      }
      ByteView d;
      if (!r.Take(dsize, d)) {
        return LogError("truncated digest");
      }
      if (!e.digests.emplace(alg, Bytes(d.begin(), d.end())).second) {
        return LogError("duplicate digest algorithm in one event");
      }
    }
    uint32_t esize = 0;
    ByteView edata;
    if (!r.U32(esize) || esize > limits.max_event_data || !r.Take(esize, edata)) {
      return LogError("truncated event data");
    }
    e.data.assign(edata.begin(), edata.end());
    if (e.type == kEvNoAction && e.pcr == 0 && e.data.size() == 17 &&
        std::memcmp(e.data.data(), kStartupLocality, 16) == 0) {
      out.startup_locality = e.data[16];
    }
    out.events.push_back(std::move(e));
  }
  return out;
}

namespace {

// ima-ng template data: le32 len | "algo:" NUL digest | le32 len | path NUL.
Result<LogEvent> ImaNgEvent(uint32_t pcr, ByteView template_hash, ByteView template_data) {
  LogEvent e;
  e.pcr = pcr;
  e.template_name = "ima-ng";
  e.data.assign(template_data.begin(), template_data.end());
  Reader t(template_data);
  uint32_t dlen = 0;
  ByteView d;
  uint32_t nlen = 0;
  ByteView n;
  if (!t.U32(dlen) || !t.Take(dlen, d) || !t.U32(nlen) || !t.Take(nlen, n) || t.remaining() != 0) {
    return LogError("malformed ima-ng template data");
  }
  const uint8_t* colon = static_cast<const uint8_t*>(std::memchr(d.data(), ':', d.size()));
  if (colon == nullptr || colon + 1 >= d.data() + d.size() || colon[1] != 0) {
    return LogError("malformed ima-ng d-ng field");
  }
  size_t algo_len = static_cast<size_t>(colon - d.data());
  ByteView fd = d.subspan(algo_len + 2);
  e.file_digest =
      std::string(reinterpret_cast<const char*>(d.data()), algo_len) + ":" + HexEncode(fd);
  if (n.empty() || n.back() != 0) {
    return LogError("malformed ima-ng n-ng field");
  }
  e.path.assign(reinterpret_cast<const char*>(n.data()), n.size() - 1);
  bool zero = true;
  for (uint8_t b : template_hash) {
    zero = zero && b == 0;
  }
  e.violation = zero;
  WIMSE_ASSIGN_OR_RETURN(Bytes sha1, HashBank(TPM2_ALG_SHA1, template_data));
  if (!e.violation && !ConstantTimeEqual(sha1, template_hash)) {
    return LogError("IMA template hash does not match the template data");
  }
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA1}, uint16_t{TPM2_ALG_SHA256},
                        uint16_t{TPM2_ALG_SHA384}, uint16_t{TPM2_ALG_SHA512}}) {
    if (e.violation) {
      e.digests[bank] = Bytes(BankDigestSize(bank), 0xFF);
    } else {
      WIMSE_ASSIGN_OR_RETURN(e.digests[bank], HashBank(bank, template_data));
    }
  }
  return e;
}

}  // namespace

Result<EventLog> ParseImaBinary(ByteView log, const LogLimits& limits) {
  if (log.size() > limits.max_bytes) {
    return LogError("larger than " + std::to_string(limits.max_bytes) + " bytes");
  }
  EventLog out;
  out.format = LogFormat::kImaBinary;
  Reader r(log);
  while (r.remaining() > 0) {
    if (out.events.size() >= limits.max_events) {
      return LogError("more than " + std::to_string(limits.max_events) + " events");
    }
    uint32_t pcr = 0;
    ByteView hash;
    uint32_t name_len = 0;
    ByteView name;
    uint32_t data_len = 0;
    ByteView data;
    if (!r.U32(pcr) || !r.Take(20, hash) || !r.U32(name_len) || name_len > 255 ||
        !r.Take(name_len, name) || !r.U32(data_len) || data_len > limits.max_event_data ||
        !r.Take(data_len, data)) {
      return LogError("truncated IMA entry at byte " + std::to_string(r.pos()));
    }
    if (pcr >= TPM2_MAX_PCRS) {
      return LogError("IMA entry for PCR " + std::to_string(pcr));
    }
    std::string tname(reinterpret_cast<const char*>(name.data()), name.size());
    if (tname != "ima-ng") {
      return LogError("IMA template \"" + tname + "\" is not supported (ima-ng only)");
    }
    WIMSE_ASSIGN_OR_RETURN(LogEvent e, ImaNgEvent(pcr, hash, data));
    out.events.push_back(std::move(e));
  }
  return out;
}

Result<EventLog> ParseImaAscii(std::string_view log, const LogLimits& limits) {
  if (log.size() > limits.max_bytes) {
    return LogError("larger than " + std::to_string(limits.max_bytes) + " bytes");
  }
  EventLog out;
  out.format = LogFormat::kImaAscii;
  size_t line_no = 0;
  while (!log.empty()) {
    size_t nl = log.find('\n');
    std::string_view line = log.substr(0, nl);
    log = nl == std::string_view::npos ? std::string_view() : log.substr(nl + 1);
    ++line_no;
    if (line.empty()) {
      continue;
    }
    if (out.events.size() >= limits.max_events) {
      return LogError("more than " + std::to_string(limits.max_events) + " events");
    }
    // <pcr> <template-hash> ima-ng <algo>:<hex> <path>  (the path may contain spaces)
    std::vector<std::string_view> f;
    std::string_view rest = line;
    for (int i = 0; i < 4; ++i) {
      size_t sp = rest.find(' ');
      if (sp == std::string_view::npos) {
        return LogError("line " + std::to_string(line_no) + ": too few fields");
      }
      f.push_back(rest.substr(0, sp));
      rest = rest.substr(sp + 1);
    }
    f.push_back(rest);
    if (f[0].empty() || f[0].size() > 2 ||
        f[0].find_first_not_of("0123456789") != std::string_view::npos) {
      return LogError("line " + std::to_string(line_no) + ": bad PCR");
    }
    uint32_t pcr = static_cast<uint32_t>(std::stoul(std::string(f[0])));
    if (pcr >= TPM2_MAX_PCRS) {
      return LogError("line " + std::to_string(line_no) + ": bad PCR");
    }
    if (f[2] != "ima-ng") {
      return LogError("line " + std::to_string(line_no) + ": template \"" + std::string(f[2]) +
                      "\" is not supported (ima-ng only)");
    }
    Result<Bytes> hash = HexDecode(f[1]);
    size_t colon = f[3].find(':');
    if (!hash.ok() || hash->size() != 20 || colon == std::string_view::npos) {
      return LogError("line " + std::to_string(line_no) + ": malformed");
    }
    Result<Bytes> fd = HexDecode(f[3].substr(colon + 1));
    if (!fd.ok()) {
      return LogError("line " + std::to_string(line_no) + ": malformed file digest");
    }
    // Rebuild the template data the kernel hashed.
    Bytes dng(f[3].begin(), f[3].begin() + static_cast<long>(colon + 1));
    dng.push_back(0);
    dng.insert(dng.end(), fd->begin(), fd->end());
    Bytes nng(f[4].begin(), f[4].end());
    nng.push_back(0);
    Bytes td;
    for (const Bytes* field : {&dng, &nng}) {
      uint32_t len = static_cast<uint32_t>(field->size());
      for (int s = 0; s < 32; s += 8) {
        td.push_back(static_cast<uint8_t>(len >> s));
      }
      td.insert(td.end(), field->begin(), field->end());
    }
    Result<LogEvent> e = ImaNgEvent(pcr, *hash, td);
    if (!e.ok()) {
      return LogError("line " + std::to_string(line_no) + ": " + e.error().message());
    }
    out.events.push_back(std::move(e).value());
  }
  return out;
}

Result<EventLog> ParseEventLog(LogFormat format, ByteView log, const LogLimits& limits) {
  switch (format) {
    case LogFormat::kTcgPcClient:
      return ParseTcgLog(log, limits);
    case LogFormat::kImaBinary:
      return ParseImaBinary(log, limits);
    case LogFormat::kImaAscii:
      return ParseImaAscii(AsString(log), limits);
  }
  return LogError("unknown format");
}

LogFormat DetectLogFormat(ByteView log) {
  if (log.size() >= 32 + 16 && std::memcmp(log.data() + 32, kSpecIdSignature, 16) == 0) {
    return LogFormat::kTcgPcClient;
  }
  // A TCG log that is not crypto-agile (SHA-1 only, "Spec ID Event02") or damaged still starts
  // with PCR 0 and EV_NO_ACTION (3), which an IMA log never does (its PCR is 10): parse it as
  // TCG so the error names the real problem rather than a "truncated IMA entry".
  static constexpr uint8_t kTcgFirstEvent[8] = {0, 0, 0, 0, 3, 0, 0, 0};
  if (log.size() >= 8 && std::memcmp(log.data(), kTcgFirstEvent, 8) == 0) {
    return LogFormat::kTcgPcClient;
  }
  bool text = !log.empty();
  for (size_t i = 0; i < log.size() && i < 512; ++i) {
    uint8_t c = log[i];
    text = text && (c == '\n' || (c >= 0x20 && c < 0x7f));
  }
  return text ? LogFormat::kImaAscii : LogFormat::kImaBinary;
}

Result<std::map<uint32_t, Bytes>> ReplayLog(const EventLog& log, uint16_t bank, size_t count) {
  if (BankDigestSize(bank) == 0) {
    return LogError("unsupported bank");
  }
  std::map<uint32_t, Bytes> pcrs;
  size_t n = std::min(count, log.events.size());
  for (size_t i = 0; i < n; ++i) {
    const LogEvent& e = log.events[i];
    if (log.format == LogFormat::kTcgPcClient && e.type == kEvNoAction) {
      continue;  // never extended
    }
    auto d = e.digests.find(bank);
    if (d == e.digests.end()) {
      return LogError("event " + std::to_string(i) + " has no digest for the bank");
    }
    auto [it, fresh] = pcrs.try_emplace(e.pcr, InitialPcrValue(e.pcr, bank));
    if (fresh && e.pcr == 0 && log.startup_locality != 0) {
      it->second.back() = log.startup_locality;
    }
    WIMSE_ASSIGN_OR_RETURN(it->second, ExtendPcr(bank, it->second, d->second));
  }
  return pcrs;
}

}  // namespace wimse::attest
