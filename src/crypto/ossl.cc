#include "crypto/ossl.h"

#include <openssl/err.h>

namespace wimse {

Error OpenSslError(const std::string& what) {
  std::string msg = what;
  unsigned long code = ERR_peek_last_error();
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    msg += " (";
    msg += buf;
    msg += ")";
  }
  ERR_clear_error();
  return Error(Layer::kOpenSsl, std::move(msg));
}

}  // namespace wimse
