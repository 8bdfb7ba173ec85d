#include "keyfile/key_ref.h"

#include <cstdio>

namespace wimse {

Result<uint32_t> ParsePersistentHandle(std::string_view text) {
  auto bad = [&]() {
    return Error(Layer::kUsage, "\"" + std::string(text.substr(0, 32)) +
                                    "\" is not a persistent handle (expected 0x81000000.."
                                    "0x81ffffff)");
  };
  if (text.size() < 3 || text.size() > 10 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X')) {
    return bad();
  }
  uint32_t v = 0;
  for (char c : text.substr(2)) {
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return bad();
    }
    v = (v << 4) | d;
  }
  if ((v >> 24) != 0x81) return bad();
  return v;
}

Result<KeyRef> ParseKeyRef(std::string_view ref) {
  KeyRef out;
  if (ref.empty()) return Error(Layer::kUsage, "empty key reference");
  if (ref.substr(0, kHandleUriScheme.size()) == kHandleUriScheme) {
    WIMSE_ASSIGN_OR_RETURN(out.handle, ParsePersistentHandle(ref.substr(kHandleUriScheme.size())));
    out.kind = KeyRef::Kind::kPersistentHandle;
    return out;
  }
  out.kind = KeyRef::Kind::kFile;
  out.path = std::string(ref);
  return out;
}

std::string HandleToString(uint32_t handle) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", handle);
  return buf;
}

}  // namespace wimse
