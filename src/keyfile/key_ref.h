// Key references as the CLI and the provider accept them: a TSS2 PRIVATE KEY file path, or
// `handle:0x81xxxxxx` for a key made persistent in the TPM (TPM2_EvictControl). Parsing only;
// no file or TPM I/O. tpm::OpenKey() turns a reference into a loaded WorkloadKey.
#ifndef WIMSE_KEYFILE_KEY_REF_H_
#define WIMSE_KEYFILE_KEY_REF_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace wimse {

inline constexpr std::string_view kHandleUriScheme = "handle:";

struct KeyRef {
  enum class Kind { kFile, kPersistentHandle };
  Kind kind = Kind::kFile;
  std::string path;     // kFile
  uint32_t handle = 0;  // kPersistentHandle: 0x81000000..0x81ffffff
};

// Parses "handle:0x81000100" (hex with 0x prefix, 1..8 digits, a persistent handle in the
// 0x81 range) or anything else as a file path. A string starting with "handle:" that is not a
// valid persistent handle is a Layer::kUsage error (never silently taken as a path).
Result<KeyRef> ParseKeyRef(std::string_view ref);

// Parses a bare persistent handle "0x81000100" (used by --persist and --handle).
Result<uint32_t> ParsePersistentHandle(std::string_view text);

// "0x81000100".
std::string HandleToString(uint32_t handle);

}  // namespace wimse

#endif  // WIMSE_KEYFILE_KEY_REF_H_
