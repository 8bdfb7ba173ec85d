// Event logs (rats-tpm §4): the TCG PC Client crypto-agile firmware log (TCG_PCR_EVENT header
// with the "Spec ID Event03" event, then TCG_PCR_EVENT2 records, little-endian), and IMA
// measurement lists in the ima-ng template (binary_runtime_measurements and
// ascii_runtime_measurements), with replay to PCR values per bank.
//
// Parsing is bounded (LogLimits: total size, event count, per-event size, digest count) and
// never trusts event types: only PCR index and digests are authenticated by a replay that
// matches a quote (go-attestation event-log-disclosure). Pure, no I/O; thread-safe.
#ifndef WIMSE_ATTEST_EVENTLOG_H_
#define WIMSE_ATTEST_EVENTLOG_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

enum class LogFormat { kTcgPcClient, kImaBinary, kImaAscii };

// "tcg-pc-client-crypto-agile", "ima-binary", "ima-ascii" and back.
std::string_view LogFormatName(LogFormat f);
Result<LogFormat> LogFormatFromName(std::string_view name);

inline constexpr uint32_t kEvNoAction = 0x3;
inline constexpr uint32_t kEvSeparator = 0x4;

struct LogEvent {
  uint32_t pcr = 0;
  uint32_t type = 0;                  // TCG event type (0 for IMA)
  std::map<uint16_t, Bytes> digests;  // TPM_ALG_ID -> digest (TCG: as logged; IMA: computed)
  Bytes data;                         // event data (TCG) or template data (IMA)
  std::string template_name;          // IMA: "ima-ng"
  std::string file_digest;            // IMA: "sha256:<hex>"
  std::string path;                   // IMA: file name
  bool violation = false;             // IMA: all-zero template hash (extends all-ones)
};

struct EventLog {
  LogFormat format = LogFormat::kTcgPcClient;
  std::vector<std::pair<uint16_t, uint16_t>> algorithms;  // Spec ID table: alg, digest size
  uint8_t startup_locality = 0;
  std::vector<LogEvent> events;  // the Spec ID event is not included
};

struct LogLimits {
  size_t max_bytes = 4 * 1024 * 1024;
  size_t max_events = 65536;
  size_t max_event_data = 1024 * 1024;
};

Result<EventLog> ParseTcgLog(ByteView log, const LogLimits& limits = {});
Result<EventLog> ParseImaBinary(ByteView log, const LogLimits& limits = {});
Result<EventLog> ParseImaAscii(std::string_view log, const LogLimits& limits = {});
// Dispatches on `format`.
Result<EventLog> ParseEventLog(LogFormat format, ByteView log, const LogLimits& limits = {});
// Guesses the format: Spec ID header -> TCG; printable text -> IMA ASCII; else IMA binary.
LogFormat DetectLogFormat(ByteView log);

// Replays `log` (the first `count` events; all when count >= size) into PCR values of `bank`
// (TPM_ALG_ID sha1/256/384/512). Returns only the PCRs that at least one event extends.
// Initial values: 0 (PCR 0 = 0..0||locality after a StartupLocality event), 17-22 all-ones.
// Errors: an extending event without a digest of `bank` (the log cannot be replayed for it).
Result<std::map<uint32_t, Bytes>> ReplayLog(const EventLog& log, uint16_t bank,
                                            size_t count = SIZE_MAX);

// Initial value of PCR `index` in `bank` (before any extend).
Bytes InitialPcrValue(uint32_t index, uint16_t bank);

// Digest size of a bank, 0 if unknown.
size_t BankDigestSize(uint16_t alg);
// PCR extend in software: H_bank(old || digest).
Result<Bytes> ExtendPcr(uint16_t bank, ByteView old_value, ByteView digest);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_EVENTLOG_H_
