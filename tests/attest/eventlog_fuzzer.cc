// libFuzzer target (meson -Dfuzz=true with clang) and, linked with fuzz_replay_main.cc, a unit
// test replaying its seed corpus (tests/data/attest/fuzz/eventlog). Untrusted event logs through
// attest/eventlog: the TCG PC Client crypto-agile log, IMA ima-ng binary and ASCII lists, format
// detection and replay into every bank. Byte 0 selects the parser (0 TCG, 1 IMA binary, 2 IMA
// ASCII, 3 detect); the rest is the log. Invariants checked on success: the event count is
// within the limits, replay of an IMA log succeeds in every bank (the parser computes every
// digest), and replaying a prefix never fails where the whole log replays.
#include <tss2/tss2_tpm2_types.h>

#include <cstddef>
#include <cstdint>

#include "attest/eventlog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wimse;
  using namespace wimse::attest;
  if (size == 0) {
    return 0;
  }
  ByteView log(data + 1, size - 1);
  LogLimits limits;
  limits.max_events = 4096;
  limits.max_event_data = 64 * 1024;
  LogFormat format = DetectLogFormat(log);
  switch (data[0] % 4) {
    case 0:
      format = LogFormat::kTcgPcClient;
      break;
    case 1:
      format = LogFormat::kImaBinary;
      break;
    case 2:
      format = LogFormat::kImaAscii;
      break;
    default:
      break;
  }
  Result<EventLog> parsed = ParseEventLog(format, log, limits);
  if (!parsed.ok()) {
    return 0;
  }
  if (parsed->events.size() > limits.max_events) {
    __builtin_trap();
  }
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA1}, uint16_t{TPM2_ALG_SHA256},
                        uint16_t{TPM2_ALG_SHA384}, uint16_t{TPM2_ALG_SHA512}}) {
    Result<std::map<uint32_t, Bytes>> all = ReplayLog(*parsed, bank);
    if (format != LogFormat::kTcgPcClient && !all.ok()) {
      __builtin_trap();
    }
    if (all.ok()) {
      for (const auto& [pcr, value] : *all) {
        if (value.size() != BankDigestSize(bank)) {
          __builtin_trap();
        }
      }
      if (!ReplayLog(*parsed, bank, parsed->events.size() / 2).ok()) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
