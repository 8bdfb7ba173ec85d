#include "util/result.h"

#include <tss2/tss2_rc.h>

#include <cstdio>

namespace wimse {

std::string_view LayerName(Layer layer) {
  switch (layer) {
    case Layer::kTpm:
      return "tpm";
    case Layer::kTcti:
      return "tcti";
    case Layer::kOpenSsl:
      return "openssl";
    case Layer::kParse:
      return "parse";
    case Layer::kPolicy:
      return "policy";
    case Layer::kIo:
      return "io";
    case Layer::kUsage:
      return "usage";
    case Layer::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string out(LayerName(layer_));
  out += ": ";
  out += message_;
  if (tss2_rc_ != 0) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%x", tss2_rc_);
    out += ": ";
    out += hex;
    // Tss2_RC_Decode never fails; it formats unknown layers generically. Builds refuse a
    // tss2-rc with CVE-2023-22745 (meson.build runs it on every layer); patched 3.2.1 drops
    // the low byte of unknown layers' codes, so the full code is printed above, always.
    const char* decoded = Tss2_RC_Decode(tss2_rc_);
    if (decoded != nullptr) {
      out += " (";
      out += decoded;
      out += ")";
    }
  }
  return out;
}

Error Error::WithContext(std::string_view context) const {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Error(layer_, std::move(msg), tss2_rc_);
}

}  // namespace wimse
