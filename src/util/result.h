// Result<T>: the error-or-value type every fallible function in wimse-tpm returns.
//
// No exceptions for control flow (CONVENTIONS rule 5). An Error carries the layer it came from,
// the raw TPM/TSS2 response code when there is one (decoded to text by ToString()), and a
// message that says what failed and where. Results are cheap to move; Error is copyable.
#ifndef WIMSE_UTIL_RESULT_H_
#define WIMSE_UTIL_RESULT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace wimse {

// Which layer produced an error. Printed as a short prefix ("tpm", "tcti", ...).
enum class Layer {
  kTpm,       // the TPM answered with an error response code
  kTcti,      // the transport to the TPM could not be opened or failed
  kOpenSsl,   // libcrypto/libssl reported an error
  kParse,     // untrusted input was malformed
  kPolicy,    // input was well-formed but not acceptable (verifier rejections)
  kIo,        // file system or network
  kUsage,     // bad arguments from the caller
  kInternal,  // a bug: an invariant did not hold
};

std::string_view LayerName(Layer layer);

// An error: layer, optional TSS2 response code, message. Never holds secrets.
class Error {
 public:
  Error(Layer layer, std::string message, uint32_t tss2_rc = 0)
      : layer_(layer), tss2_rc_(tss2_rc), message_(std::move(message)) {}

  Layer layer() const { return layer_; }
  // The TSS2_RC when the error came from tpm2-tss (0 otherwise).
  uint32_t tss2_rc() const { return tss2_rc_; }
  const std::string& message() const { return message_; }

  // "<layer>: <message>" plus ": 0x<rc> (<Tss2_RC_Decode text>)" when a response code is set.
  std::string ToString() const;

  // Returns this error with "<context>: " prepended to the message.
  Error WithContext(std::string_view context) const;

 private:
  Layer layer_;
  uint32_t tss2_rc_;
  std::string message_;
};

// Result<T> holds either a T or an Error. Access value() only after checking ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_{Layer::kInternal, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status OkStatus() { return Status(); }

}  // namespace wimse

#define WIMSE_CONCAT_INNER_(a, b) a##b
#define WIMSE_CONCAT_(a, b) WIMSE_CONCAT_INNER_(a, b)

// Evaluates `expr` (a Result<void> or Result<T>); returns its error from the enclosing function.
#define WIMSE_RETURN_IF_ERROR(expr)            \
  do {                                         \
    auto wimse_status_ = (expr);               \
    if (!wimse_status_.ok()) {                 \
      return std::move(wimse_status_).error(); \
    }                                          \
  } while (0)

// `WIMSE_ASSIGN_OR_RETURN(auto x, F());` declares x from F()'s value or returns F()'s error.
#define WIMSE_ASSIGN_OR_RETURN(lhs, expr) \
  WIMSE_ASSIGN_OR_RETURN_IMPL_(WIMSE_CONCAT_(wimse_result_, __LINE__), lhs, expr)
#define WIMSE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) {                                   \
    return std::move(tmp).error();                   \
  }                                                  \
  lhs = std::move(tmp).value()

#endif  // WIMSE_UTIL_RESULT_H_
