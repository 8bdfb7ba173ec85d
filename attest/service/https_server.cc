#include "attest/service/https_server.h"

#include <httplib.h>

#include <chrono>

namespace wimse::service {

struct CredentialHttpsServer::Impl {
  CredentialService* service;
  HttpsServerOptions options;
  std::unique_ptr<httplib::SSLServer> server;
};

CredentialHttpsServer::CredentialHttpsServer(CredentialService* service, HttpsServerOptions options)
    : impl_(new Impl{service, std::move(options), nullptr}) {}

CredentialHttpsServer::~CredentialHttpsServer() = default;

namespace {

void Reply(httplib::Response& res, const ServiceResponse& r) {
  res.status = r.status;
  res.set_content(r.body, r.content_type.c_str());
}

std::string Peer(const httplib::Request& req) {
  return req.remote_addr + ":" + std::to_string(req.remote_port);
}

}  // namespace

Status CredentialHttpsServer::Run() {
  impl_->server =
      std::make_unique<httplib::SSLServer>(impl_->options.tls_cert, impl_->options.tls_key);
  httplib::SSLServer& srv = *impl_->server;
  if (!srv.is_valid()) return Error(Layer::kOpenSsl, "cannot set up the TLS server context");
  srv.set_payload_max_length(256 * 1024);
  srv.set_read_timeout(10, 0);
  srv.set_write_timeout(10, 0);
  CredentialService* s = impl_->service;
  if (impl_->options.on_request) {
    // One request at a time per serving thread: a thread-local start time is enough.
    static thread_local std::chrono::steady_clock::time_point started;
    srv.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      started = std::chrono::steady_clock::now();
      return httplib::Server::HandlerResponse::Unhandled;
    });
    auto cb = impl_->options.on_request;
    srv.set_logger([cb](const httplib::Request& req, const httplib::Response& res) {
      std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - started;
      cb(req.method, req.path, res.status, ms.count());
    });
  }
  srv.Post("/v1/enrol/start", [s](const httplib::Request& req, httplib::Response& res) {
    Reply(res, s->EnrolStart(req.body, Peer(req)));
  });
  srv.Post("/v1/enrol/finish", [s](const httplib::Request& req, httplib::Response& res) {
    Reply(res, s->EnrolFinish(req.body, Peer(req)));
  });
  srv.Post("/v1/challenge", [s](const httplib::Request& req, httplib::Response& res) {
    Reply(res, s->Challenge(req.body, Peer(req)));
  });
  srv.Post("/v1/attest", [s](const httplib::Request& req, httplib::Response& res) {
    Reply(res, s->Attest(req.body, Peer(req)));
  });
  srv.Get("/v1/bundle",
          [s](const httplib::Request&, httplib::Response& res) { Reply(res, s->Bundle()); });
  auto jwks = [s](const httplib::Request&, httplib::Response& res) { Reply(res, s->Jwks()); };
  srv.Get("/v1/jwks", jwks);
  srv.Get("/.well-known/jwks.json", jwks);
  srv.Get("/v1/health",
          [s](const httplib::Request&, httplib::Response& res) { Reply(res, s->Health()); });
  int port = impl_->options.port;
  if (port == 0) {
    port = srv.bind_to_any_port(impl_->options.host.c_str());
    if (port <= 0) return Error(Layer::kIo, "cannot bind " + impl_->options.host);
  } else if (!srv.bind_to_port(impl_->options.host.c_str(), port)) {
    return Error(Layer::kIo, "cannot bind " + impl_->options.host + ":" + std::to_string(port));
  }
  if (impl_->options.on_listening) impl_->options.on_listening(port);
  if (!srv.listen_after_bind()) return Error(Layer::kIo, "the HTTPS server stopped with an error");
  return OkStatus();
}

void CredentialHttpsServer::Stop() {
  if (impl_->server) impl_->server->stop();
}

}  // namespace wimse::service
