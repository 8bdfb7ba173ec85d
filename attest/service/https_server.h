// The credential service over HTTPS (cpp-httplib with OpenSSL): routes of credential_service.h.
#ifndef WIMSE_ATTEST_SERVICE_HTTPS_SERVER_H_
#define WIMSE_ATTEST_SERVICE_HTTPS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "attest/service/credential_service.h"
#include "crypto/ossl.h"
#include "util/result.h"

namespace wimse::service {

struct HttpsServerOptions {
  std::string host = "127.0.0.1";
  int port = 8443;              // 0: pick a free port
  X509* tls_cert = nullptr;     // borrowed; the server certificate
  EVP_PKEY* tls_key = nullptr;  // borrowed; its key (software or a provider key)
  // Called once the socket listens, with the bound port.
  std::function<void(int port)> on_listening;
  // Called after every response is written (from the serving thread), with the time from the
  // request being read in full to the response being written: the service-side latency. No
  // body, header or token is passed. Optional; must be thread-safe.
  std::function<void(const std::string& method, const std::string& path, int status,
                     double milliseconds)>
      on_request;
};

// Serves `service` until Stop() is called (from any thread or a signal-watching thread).
class CredentialHttpsServer {
 public:
  CredentialHttpsServer(CredentialService* service, HttpsServerOptions options);
  ~CredentialHttpsServer();
  // Binds and serves; returns when stopped. Errors: TLS setup, bind.
  Status Run();
  // Makes Run() return. Thread-safe.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wimse::service

#endif  // WIMSE_ATTEST_SERVICE_HTTPS_SERVER_H_
