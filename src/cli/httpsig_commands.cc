// httpsig sign|verify: WIMSE HTTP message signatures (draft-ietf-wimse-http-signature-07,
// RFC 9421) from the command line.
//
// sign prints the header lines a request (or response) needs, one "Name: value" per line, so
// the output drops into `curl -H @headers.txt`: the --header lines given (they are covered by
// the signature, so they must be sent exactly as signed), then Workload-Identity-Token,
// Content-Digest (when there is a body), Signature-Input and Signature. The key is a TSS2 key
// file: one TPM2_Sign per message.
// verify reads received header lines from a file ("Name: value" per line; a leading
// "HTTP/1.1 404 ..." status line, as `curl -D` writes it, gives the status of a response) and
// exits 0 when the WIMSE signature is valid, 1 with the reason otherwise.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/key_cli_util.h"
#include "cli/token_cli_util.h"
#include "tpm/workload_key.h"
#include "util/file.h"
#include "wimse/httpsig.h"
#include "wimse/structured_fields.h"

namespace wimse::cli {
namespace {

constexpr size_t kMaxBodyFile = 16 * 1024 * 1024;
constexpr size_t kMaxHeaderFile = 256 * 1024;

Result<HttpField> ParseHeaderLine(std::string_view line) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Error(Layer::kUsage, "header line is not 'Name: value'");
  }
  std::string name(line.substr(0, colon));
  for (char c : name) {
    if (c <= 0x20 || c >= 0x7f) {
      return Error(Layer::kUsage, "invalid header name");
    }
  }
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  return HttpField{name, std::string(value)};
}

// Header lines from a file; an optional leading status line sets *status.
Result<std::vector<HttpField>> ReadHeaderFile(const std::string& path, int* status) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path, kMaxHeaderFile));
  std::vector<HttpField> out;
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty()) {
      if (!out.empty()) {
        break;  // end of the header section (curl -D)
      }
      continue;
    }
    if (first && line.rfind("HTTP/", 0) == 0) {
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.size() < sp + 4) {
        return Error(Layer::kParse, path + ": bad status line");
      }
      if (status != nullptr) {
        *status = std::atoi(line.substr(sp + 1, 3).c_str());
      }
      first = false;
      continue;
    }
    first = false;
    auto f = ParseHeaderLine(line);
    if (!f.ok()) {
      return f.error().WithContext(path);
    }
    out.push_back(std::move(f).value());
  }
  return out;
}

// The nonce of the WIMSE-tagged signature in `fields` (the request a response answers).
Result<std::string> WimseNonce(const std::vector<HttpField>& fields) {
  auto input = CombinedFieldValue(fields, "signature-input");
  if (!input) {
    return Error(Layer::kUsage, "the request headers have no Signature-Input");
  }
  WIMSE_ASSIGN_OR_RETURN(sf::Dictionary dict, sf::ParseDictionary(*input));
  for (const sf::Member& m : dict) {
    const sf::BareItem* tag = sf::FindParam(m.list.params, "tag");
    const sf::BareItem* nonce = sf::FindParam(m.list.params, "nonce");
    if (m.is_inner_list && tag != nullptr && tag->string == kHttpSigTag && nonce != nullptr &&
        nonce->type == sf::Type::kString) {
      return nonce->string;
    }
  }
  return Error(Layer::kUsage, "the request headers carry no WIMSE signature nonce");
}

struct SignCli {
  std::string key;
  std::string wit;
  std::string method;
  std::string url;
  std::string body;
  std::vector<std::string> headers;
  std::string aud;
  int64_t ttl = 60;
  bool sign_response = false;
  bool response = false;
  int status = 200;
  std::string request_headers;
  std::string out;
  AuthSource auth;
};

void RunSign(GlobalOptions& g, const SignCli& o) {
  const char* what = "httpsig sign";
  auto wit = ReadToken(o.wit);
  if (!wit.ok()) {
    return Fail(g, what, wit.error());
  }
  std::vector<HttpField> given;
  for (const std::string& h : o.headers) {
    auto f = ParseHeaderLine(h);
    if (!f.ok()) {
      return Fail(g, what, f.error());
    }
    given.push_back(std::move(f).value());
  }
  std::optional<std::string> body;
  if (!o.body.empty()) {
    auto b = ReadFileString(o.body, kMaxBodyFile);
    if (!b.ok()) {
      return Fail(g, what, b.error());
    }
    body = std::move(b).value();
  }
  HttpRequest req;
  req.method = o.method;
  req.target_uri = o.url;
  std::string request_nonce;
  if (o.response) {
    if (o.request_headers.empty()) {
      return Fail(g, what, Error(Layer::kUsage, "--response needs --request-headers"));
    }
    auto rh = ReadHeaderFile(o.request_headers, nullptr);
    if (!rh.ok()) {
      return Fail(g, what, rh.error());
    }
    req.fields = std::move(rh).value();
    auto n = WimseNonce(req.fields);
    if (!n.ok()) {
      return Fail(g, what, n.error());
    }
    request_nonce = *n;
  }
  auto key = OpenCliKey(g, o.key, o.auth);
  if (!key.ok()) {
    return Fail(g, what, key.error());
  }
  auto signer = std::make_unique<tpm::TpmSigner>(*key);
  HttpSigSignOptions so;
  so.audience = o.aud;
  so.ttl_seconds = o.ttl;
  so.require_signed_response = o.sign_response;
  Result<HttpSigResult> result = Error(Layer::kInternal, "not signed");
  if (o.response) {
    HttpResponse resp;
    resp.status = o.status;
    resp.fields = given;
    resp.body = body;
    result = SignHttpResponse(*signer, *wit, req, request_nonce, resp, so);
  } else {
    req.fields = given;
    req.body = body;
    result = SignHttpRequest(*signer, *wit, req, so);
  }
  if (!result.ok()) {
    return Fail(g, what, result.error());
  }
  std::string text;
  for (const HttpField& f : given) {
    text += f.name + ": " + f.value + "\n";
  }
  for (const HttpField& f : result->added) {
    text += f.name + ": " + f.value + "\n";
  }
  WriteOrPrint(g, what, o.out, text);
}

struct VerifyCli {
  std::string headers;
  std::string method;
  std::string url;
  std::string body;
  std::vector<std::string> aud;
  AnchorOptions anchors;
  int64_t leeway = 30;
  int64_t max_lifetime = 600;
  int64_t now = 0;
  bool response = false;
  int status = 0;
  std::string request_headers;
};

void RunVerify(GlobalOptions& g, const VerifyCli& o) {
  const char* what = "httpsig verify";
  int status = 0;
  auto fields = ReadHeaderFile(o.headers, &status);
  if (!fields.ok()) {
    return Fail(g, what, fields.error());
  }
  if (o.status != 0) {
    status = o.status;
  }
  std::optional<std::string> body;
  if (!o.body.empty()) {
    auto b = ReadFileString(o.body, kMaxBodyFile);
    if (!b.ok()) {
      return Fail(g, what, b.error());
    }
    body = std::move(b).value();
  }
  auto anchors = LoadAnchors(o.anchors);
  if (!anchors.ok()) {
    return Fail(g, what, anchors.error());
  }
  HttpSigVerifyOptions vo;
  vo.wit.anchors = anchors->get();
  vo.wit.leeway_seconds = o.leeway;
  if (o.now != 0) {
    vo.wit.now = o.now;
  }
  vo.audiences = o.aud;
  vo.max_lifetime_seconds = o.max_lifetime;
  HttpRequest req;
  req.method = o.method;
  req.target_uri = o.url;
  VerifyResult<VerifiedHttpSig> r =
      VerifyResult<VerifiedHttpSig>::Reject(TokenCheck::kMalformed, "not verified");
  if (o.response) {
    if (o.request_headers.empty() || status == 0) {
      return Fail(g, what,
                  Error(Layer::kUsage,
                        "--response needs --request-headers and a status "
                        "(--status or a status line in --headers)"));
    }
    auto rh = ReadHeaderFile(o.request_headers, nullptr);
    if (!rh.ok()) {
      return Fail(g, what, rh.error());
    }
    req.fields = std::move(rh).value();
    auto nonce = WimseNonce(req.fields);
    if (!nonce.ok()) {
      return Fail(g, what, nonce.error());
    }
    HttpResponse resp;
    resp.status = status;
    resp.fields = std::move(fields).value();
    resp.body = body;
    r = VerifyHttpResponseSignature(req, *nonce, resp, vo);
  } else {
    if (o.aud.empty()) {
      return Fail(g, what, Error(Layer::kUsage, "verifying a request needs --aud"));
    }
    req.fields = std::move(fields).value();
    req.body = body;
    r = VerifyHttpRequestSignature(req, vo);
  }
  if (!r.ok()) {
    return Fail(g, what, Error(Layer::kPolicy, "rejected: " + r.reason()));
  }
  std::printf("valid: sub=%s nonce=%s created=%lld expires=%lld%s%s\n",
              r.claims().wit.sub.uri.c_str(), r.claims().nonce.c_str(),
              static_cast<long long>(r.claims().created),
              static_cast<long long>(r.claims().expires),
              r.claims().aud.empty() ? "" : (" aud=" + r.claims().aud).c_str(),
              r.claims().signed_response_requested ? " sign-response=requested" : "");
}

}  // namespace

void RegisterHttpSigCommands(CLI::App& app, GlobalOptions& g) {
  auto* hs = app.add_subcommand(
      "httpsig", "WIMSE HTTP message signatures (RFC 9421 profile; sign in the TPM, verify)");
  hs->require_subcommand(1);

  auto* sign = hs->add_subcommand(
      "sign", "Sign a request (or, with --response, a response); prints the header lines");
  auto s = std::make_shared<SignCli>();
  sign->add_option("--key", s->key, "workload TSS2 key file (the WIT's cnf key)")->required();
  AddAuthOptions(sign, s->auth);
  sign->add_option("--wit", s->wit, "file holding the WIT")->required();
  sign->add_option("--method", s->method, "request method, e.g. GET")->required();
  sign->add_option("--url", s->url, "absolute request target URI")->required();
  sign->add_option("--body", s->body, "file holding the message body (adds Content-Digest)");
  sign->add_option("--header", s->headers,
                   "'Name: value' to send and cover (Content-Type, Authorization, Txn-Token); "
                   "repeatable");
  sign->add_option("--aud", s->aud, "wimse-aud (default: the URL without query or fragment)");
  sign->add_option("--ttl", s->ttl, "expires - created in seconds (default 60, at most 300)");
  sign->add_flag("--sign-response", s->sign_response, "ask the server to sign its response");
  sign->add_flag("--response", s->response,
                 "sign a response to the request described by --method/--url");
  sign->add_option("--status", s->status, "response status code (with --response)");
  sign->add_option("--request-headers", s->request_headers,
                   "with --response: the request's header lines (for its nonce)");
  sign->add_option("--out", s->out, "write the header lines here (mode 0600) instead of stdout");
  sign->callback([&g, s] { RunSign(g, *s); });

  auto* verify = hs->add_subcommand(
      "verify", "Verify the WIMSE signature of a received request (or response); exit 0 valid");
  auto v = std::make_shared<VerifyCli>();
  verify->add_option("--headers", v->headers, "file with the received header lines")->required();
  verify->add_option("--method", v->method, "request method")->required();
  verify->add_option("--url", v->url, "absolute request target URI as received")->required();
  verify->add_option("--body", v->body, "file holding the received body");
  verify->add_option("--aud", v->aud, "an accepted wimse-aud (requests; repeatable)");
  AddAnchorOptions(verify, v->anchors);
  verify->add_option("--leeway", v->leeway, "clock leeway in seconds (default 30)");
  verify->add_option("--max-lifetime", v->max_lifetime,
                     "largest accepted expires - created in seconds (default 600)");
  verify->add_option("--now", v->now, "verify as of this time (seconds since the epoch)");
  verify->add_flag("--response", v->response, "the headers are a response's");
  verify->add_option("--status", v->status, "response status (default: from the status line)");
  verify->add_option("--request-headers", v->request_headers,
                     "with --response: the header lines of the request we sent");
  verify->callback([&g, v] { RunVerify(g, *v); });
}

}  // namespace wimse::cli
