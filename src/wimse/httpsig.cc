#include "wimse/httpsig.h"

#include <set>

#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "wimse/http_headers.h"

namespace wimse {
namespace {

constexpr size_t kMaxNonceBytes = 256;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
    v.remove_prefix(1);
  }
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
    v.remove_suffix(1);
  }
  return v;
}

// The parts of an absolute target URI that derived components need.
struct TargetUri {
  std::string scheme;     // lower-case
  std::string authority;  // lower-case host[:port], default port removed
  std::string path;       // "/" when empty
  bool has_query = false;
  std::string query;  // without "?"
  std::string without_fragment;
};

Result<TargetUri> ParseTargetUri(std::string_view uri) {
  TargetUri t;
  size_t colon = uri.find("://");
  if (colon == std::string_view::npos || colon == 0) {
    return Error(Layer::kUsage, "target URI is not absolute");
  }
  for (char c : uri) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return Error(Layer::kUsage, "target URI has a space or non-ASCII character");
    }
  }
  size_t hash = uri.find('#');
  std::string_view u = uri.substr(0, hash);
  t.without_fragment = std::string(u);
  t.scheme = Lower(u.substr(0, colon));
  std::string_view rest = u.substr(colon + 3);
  size_t auth_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, auth_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return Error(Layer::kUsage, "target URI has an empty authority or userinfo");
  }
  t.authority = Lower(authority);
  for (const char* suffix : {":80", ":443"}) {
    std::string_view sfx(suffix);
    bool default_port =
        (t.scheme == "http" && sfx == ":80") || (t.scheme == "https" && sfx == ":443");
    if (default_port && t.authority.size() > sfx.size() &&
        t.authority.compare(t.authority.size() - sfx.size(), sfx.size(), sfx) == 0) {
      t.authority.resize(t.authority.size() - sfx.size());
    }
  }
  std::string_view pq = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);
  size_t q = pq.find('?');
  t.path = std::string(pq.substr(0, q));
  if (t.path.empty()) {
    t.path = "/";
  }
  if (q != std::string_view::npos) {
    t.has_query = true;
    t.query = std::string(pq.substr(q + 1));
  }
  return t;
}

std::string Quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }

// Serialized component identifier, e.g. "\"@method\";req".
std::string ComponentId(const sf::Item& item) {
  auto s = sf::SerializeItem(item);
  return s.ok() ? *s : std::string("?");
}

sf::Item Component(std::string_view name, bool req = false) {
  sf::Item item;
  item.value = sf::BareItem::String(std::string(name));
  if (req) {
    item.params.emplace_back("req", sf::BareItem::Boolean(true));
  }
  return item;
}

struct Failure {
  TokenCheck check;
  std::string reason;
};

// The signature selected by tag.
struct Selected {
  std::string label;
  sf::InnerList list;
  Bytes signature;
  std::string signature_field;  // the combined Signature field value (for the audit hash)
};

std::optional<Failure> SelectWimseSignature(const std::vector<HttpField>& fields, Selected* out) {
  auto input = CombinedFieldValue(fields, "signature-input");
  if (!input) {
    return Failure{TokenCheck::kMalformed, "no Signature-Input"};
  }
  auto sig_value = CombinedFieldValue(fields, "signature");
  if (!sig_value) {
    return Failure{TokenCheck::kMalformed, "no Signature"};
  }
  auto dict = sf::ParseDictionary(*input);
  if (!dict.ok()) {
    return Failure{TokenCheck::kMalformed, "Signature-Input: " + dict.error().message()};
  }
  const sf::Member* chosen = nullptr;
  for (const sf::Member& m : *dict) {
    if (!m.is_inner_list) {
      return Failure{TokenCheck::kMalformed,
                     "Signature-Input member \"" + m.key + "\" is not an inner list"};
    }
    const sf::BareItem* tag = sf::FindParam(m.list.params, "tag");
    if (tag != nullptr && tag->type == sf::Type::kString && tag->string == kHttpSigTag) {
      if (chosen != nullptr) {
        return Failure{TokenCheck::kMalformed, "ambiguous wimse signature: two carry the tag"};
      }
      chosen = &m;
    }
  }
  if (chosen == nullptr) {
    return Failure{TokenCheck::kMalformed,
                   "no wimse signature (no tag wimse-workload-to-workload)"};
  }
  auto sigs = sf::ParseDictionary(*sig_value);
  if (!sigs.ok()) {
    return Failure{TokenCheck::kMalformed, "Signature: " + sigs.error().message()};
  }
  const sf::Member* sig = nullptr;
  for (const sf::Member& m : *sigs) {
    if (m.key == chosen->key) {
      sig = &m;
    }
  }
  if (sig == nullptr) {
    return Failure{TokenCheck::kMalformed, "no Signature for label \"" + chosen->key + "\""};
  }
  if (sig->is_inner_list || sig->item.value.type != sf::Type::kByteSequence ||
      !sig->item.params.empty()) {
    return Failure{TokenCheck::kMalformed,
                   "Signature \"" + chosen->key + "\" is not a byte sequence"};
  }
  out->label = chosen->key;
  out->list = chosen->list;
  out->signature = sig->item.value.bytes;
  out->signature_field = *sig_value;
  return std::nullopt;
}

// Profile checks, Content-Digest and the signature itself. `response` null: a request.
std::optional<Failure> CheckMessage(const HttpRequest& request, const HttpResponse* response,
                                    std::string_view request_nonce, EVP_PKEY* key, jose::JwsAlg alg,
                                    const HttpSigVerifyOptions& options, int64_t now,
                                    VerifiedHttpSig* out) {
  const bool is_response = response != nullptr;
  const std::vector<HttpField>& fields = is_response ? response->fields : request.fields;
  Selected sel;
  if (auto f = SelectWimseSignature(fields, &sel)) {
    return f;
  }
  out->label = sel.label;

  // Signature parameters.
  static const std::set<std::string> kRequestParams = {
      "created", "expires", "nonce", "tag", "wimse-aud", "wimse-sign-response"};
  static const std::set<std::string> kResponseParams = {"created", "expires", "nonce", "tag",
                                                        "wimse-req-nonce"};
  for (const auto& [name, value] : sel.list.params) {
    if (name == "alg" || name == "keyid") {
      return Failure{TokenCheck::kHeader, "forbidden signature parameter " + name};
    }
    if ((is_response ? kResponseParams : kRequestParams).count(name) == 0) {
      return Failure{TokenCheck::kHeader, "unexpected signature parameter " + name};
    }
  }
  const sf::BareItem* created = sf::FindParam(sel.list.params, "created");
  const sf::BareItem* expires = sf::FindParam(sel.list.params, "expires");
  const sf::BareItem* nonce = sf::FindParam(sel.list.params, "nonce");
  if (created == nullptr || expires == nullptr || nonce == nullptr) {
    return Failure{TokenCheck::kHeader,
                   std::string("missing signature parameter ") + (created == nullptr   ? "created"
                                                                  : expires == nullptr ? "expires"
                                                                                       : "nonce")};
  }
  if (created->type != sf::Type::kInteger || created->integer < 0 ||
      expires->type != sf::Type::kInteger || expires->integer < 0) {
    return Failure{TokenCheck::kTime, "created/expires are not non-negative integers"};
  }
  if (nonce->type != sf::Type::kString || nonce->string.empty() ||
      nonce->string.size() > kMaxNonceBytes) {
    return Failure{TokenCheck::kHeader, "nonce is not a non-empty string"};
  }
  out->created = created->integer;
  out->expires = expires->integer;
  out->nonce = nonce->string;
  if (is_response) {
    const sf::BareItem* req_nonce = sf::FindParam(sel.list.params, "wimse-req-nonce");
    if (req_nonce == nullptr) {
      return Failure{TokenCheck::kHeader, "missing signature parameter wimse-req-nonce"};
    }
    if (req_nonce->type != sf::Type::kString ||
        !ConstantTimeEqual(AsBytes(req_nonce->string), AsBytes(request_nonce))) {
      return Failure{TokenCheck::kBinding, "wimse-req-nonce does not match the request nonce"};
    }
  } else {
    const sf::BareItem* aud = sf::FindParam(sel.list.params, "wimse-aud");
    if (aud == nullptr) {
      return Failure{TokenCheck::kHeader, "missing signature parameter wimse-aud"};
    }
    if (aud->type != sf::Type::kString) {
      return Failure{TokenCheck::kHeader, "wimse-aud is not a string"};
    }
    out->aud = aud->string;
    const sf::BareItem* sr = sf::FindParam(sel.list.params, "wimse-sign-response");
    if (sr != nullptr && sr->type != sf::Type::kBoolean) {
      return Failure{TokenCheck::kHeader, "wimse-sign-response is not a boolean"};
    }
    out->signed_response_requested = sr != nullptr && sr->boolean;
  }

  // Validity window.
  int64_t leeway = options.wit.leeway_seconds;
  if (out->created > now + leeway) {
    return Failure{TokenCheck::kTime, "created in the future"};
  }
  if (out->expires < out->created) {
    return Failure{TokenCheck::kTime, "expires before created"};
  }
  if (now >= out->expires + leeway) {
    return Failure{TokenCheck::kTime, "signature expired"};
  }
  if (out->expires - out->created > options.max_lifetime_seconds) {
    return Failure{TokenCheck::kTime, "signature lifetime too long"};
  }

  // Audience (requests): configured values only, never Host.
  if (!is_response) {
    bool aud_ok = false;
    for (const std::string& a : options.audiences) {
      aud_ok = aud_ok || a == out->aud;
    }
    if (!aud_ok) {
      return Failure{TokenCheck::kAudience, "wimse-aud does not match"};
    }
  }

  // Covered components.
  std::set<std::string> covered;
  for (const sf::Item& item : sel.list.items) {
    std::string id = ComponentId(item);
    if (!covered.insert(id).second) {
      return Failure{TokenCheck::kMalformed, "duplicate covered component " + id};
    }
    out->covered.push_back(id);
  }
  auto has = [&](std::string_view name, bool req = false) {
    return covered.count(ComponentId(Component(name, req))) != 0;
  };
  bool req_ctx = is_response;
  if (is_response && !has("@status")) {
    return Failure{TokenCheck::kBinding, "\"@status\" not covered"};
  }
  if (!has("@method", req_ctx)) {
    return Failure{TokenCheck::kBinding,
                   ComponentId(Component("@method", req_ctx)) + " not covered"};
  }
  if (!has("@request-target", req_ctx) && !(has("@path", req_ctx) && has("@query", req_ctx))) {
    return Failure{TokenCheck::kBinding,
                   "neither \"@request-target\" nor \"@path\" and \"@query\" covered"};
  }
  std::vector<std::string_view> must_cover = {"content-type", "content-digest",
                                              "workload-identity-token"};
  if (!is_response) {
    must_cover.push_back("authorization");
    must_cover.push_back("txn-token");
  }
  for (std::string_view name : must_cover) {
    if (FieldCount(fields, name) != 0 && !has(name)) {
      return Failure{TokenCheck::kBinding, Quoted(name) + " present but not covered"};
    }
  }
  if (FieldCount(fields, kWitHeaderName) == 0) {
    return Failure{TokenCheck::kBinding, "no Workload-Identity-Token"};
  }

  // Content-Digest whenever there is a body; any Content-Digest must match.
  const std::optional<std::string>& body = is_response ? response->body : request.body;
  auto digest_field = CombinedFieldValue(fields, "content-digest");
  if (body.has_value() && !body->empty() && !digest_field) {
    return Failure{TokenCheck::kBinding, "body without Content-Digest"};
  }
  if (digest_field) {
    Status st = CheckContentDigest(*digest_field, body.value_or(""));
    if (!st.ok()) {
      return Failure{TokenCheck::kBinding, st.error().message()};
    }
  }

  // Signature base and signature.
  auto base = BuildSignatureBase(sel.list, request, response);
  if (!base.ok()) {
    return Failure{TokenCheck::kMalformed, base.error().message()};
  }
  Status sig = jose::VerifyJwsSignature(key, alg, *base, sel.signature);
  if (!sig.ok()) {
    return Failure{TokenCheck::kSignature, sig.error().message()};
  }
  return std::nullopt;
}

// Extracts and validates the WIT of `fields` (exactly one Workload-Identity-Token).
VerifyResult<VerifiedWit> VerifyFieldWit(const std::vector<HttpField>& fields,
                                         const HttpSigVerifyOptions& options, int64_t now,
                                         std::string* wit_out) {
  using R = VerifyResult<VerifiedWit>;
  size_t n = FieldCount(fields, kWitHeaderName);
  if (n != 1) {
    return R::Reject(TokenCheck::kMalformed, n == 0 ? "no Workload-Identity-Token"
                                                    : "more than one Workload-Identity-Token");
  }
  auto value = CombinedFieldValue(fields, kWitHeaderName);
  auto wit = ParseWitFieldValue(*value);
  if (!wit.ok()) {
    return R::Reject(TokenCheck::kMalformed, wit.error().message());
  }
  *wit_out = std::string(*wit);
  WitVerifyOptions wo = options.wit;
  wo.now = now;
  wo.audit = nullptr;
  return VerifyWit(*wit, wo);
}

VerifyResult<VerifiedHttpSig> VerifyImpl(const HttpRequest& request, const HttpResponse* response,
                                         std::string_view request_nonce,
                                         const HttpSigVerifyOptions& options, int64_t now) {
  using R = VerifyResult<VerifiedHttpSig>;
  const std::vector<HttpField>& fields = response != nullptr ? response->fields : request.fields;
  std::string wit;
  auto w = VerifyFieldWit(fields, options, now, &wit);
  if (!w.ok()) {
    return R::Reject(w.check(), "WIT: " + w.reason());
  }
  VerifiedHttpSig out;
  if (auto f = CheckMessage(request, response, request_nonce, w.claims().cnf_key.get(),
                            w.claims().cnf_alg, options, now, &out)) {
    return R::Reject(f->check, f->reason);
  }
  if (options.replay_cache != nullptr &&
      !options.replay_cache->CheckAndInsert(w.claims().cnf_thumbprint + ".httpsig." + out.nonce,
                                            out.expires + options.wit.leeway_seconds + 1, now)) {
    return R::Reject(TokenCheck::kReplay, "nonce replayed");
  }
  out.wit = std::move(w).take_claims();
  return R::Accept(std::move(out));
}

VerifyResult<VerifiedHttpSig> VerifyAndAudit(const HttpRequest& request,
                                             const HttpResponse* response,
                                             std::string_view request_nonce,
                                             const HttpSigVerifyOptions& options) {
  int64_t now = NowOr(options.wit.now);
  auto result = VerifyImpl(request, response, request_nonce, options, now);
  if (options.audit != nullptr) {
    TokenAuditRecord rec;
    rec.time = now;
    rec.kind = response != nullptr ? "httpsig-response" : "httpsig";
    rec.accepted = result.ok();
    rec.sub = result.ok() ? result.claims().wit.sub.uri : "";
    rec.aud = result.ok() ? result.claims().aud
                          : (options.audiences.empty() ? "" : options.audiences.front());
    rec.reason = result.reason();
    const auto& fields = response != nullptr ? response->fields : request.fields;
    auto sig = CombinedFieldValue(fields, "signature");
    auto digest = Digest(HashAlg::kSha256, AsBytes(sig.value_or("")));
    rec.token_sha256 = digest.ok() ? HexEncode(*digest) : "";
    options.audit->Record(rec);
  }
  return result;
}

Result<std::string> RandomNonce() { return RandomJti(); }

// Shared by request and response signing once the covered list and parameters are known.
Result<HttpSigResult> SignCommon(Signer& key, jose::JwsAlg alg, sf::InnerList list,
                                 const HttpRequest& request, const HttpResponse* response,
                                 std::vector<HttpField>& fields, std::string_view label,
                                 HttpSigResult result) {
  if (auto existing = CombinedFieldValue(fields, "signature-input")) {
    auto dict = sf::ParseDictionary(*existing);
    if (!dict.ok()) {
      return Error(Layer::kUsage, "existing Signature-Input is malformed");
    }
    for (const sf::Member& m : *dict) {
      if (m.key == label) {
        return Error(Layer::kUsage,
                     "the message already has a signature labelled " + std::string(label));
      }
    }
  }
  WIMSE_ASSIGN_OR_RETURN(std::string base, BuildSignatureBase(list, request, response));
  // RFC 9421 §3.3.7: the JWS algorithm of the WIT's cnf.jwk.alg, over the signature base.
  WIMSE_ASSIGN_OR_RETURN(Bytes sig, jose::SignWithJwsAlg(key, alg, base));
  WIMSE_ASSIGN_OR_RETURN(std::string params, sf::SerializeInnerList(list));
  HttpField input{"Signature-Input", std::string(label) + "=" + params};
  HttpField signature{"Signature", std::string(label) + "=:" + sf::Base64Encode(sig) + ":"};
  fields.push_back(input);
  fields.push_back(signature);
  result.added.push_back(input);
  result.added.push_back(signature);
  result.signature_base = std::move(base);
  return result;
}

// Adds the WIT and Content-Digest fields a signed message needs; records what was added.
Status AddProfileFields(std::string_view wit, const std::optional<std::string>& body,
                        std::vector<HttpField>& fields, HttpSigResult& result) {
  auto existing_wit = CombinedFieldValue(fields, kWitHeaderName);
  if (existing_wit) {
    if (FieldCount(fields, kWitHeaderName) != 1 || *existing_wit != wit) {
      return Error(Layer::kUsage, "the message carries a different Workload-Identity-Token");
    }
  } else {
    HttpField f{std::string(kWitHeaderName), std::string(wit)};
    fields.push_back(f);
    result.added.push_back(f);
  }
  auto existing_digest = CombinedFieldValue(fields, "content-digest");
  if (existing_digest) {
    Status st = CheckContentDigest(*existing_digest, body.value_or(""));
    if (!st.ok()) {
      return Error(Layer::kUsage, "existing Content-Digest: " + st.error().message());
    }
  } else if (body.has_value() && !body->empty()) {
    HttpField f{"Content-Digest", ContentDigestSha256(*body)};
    fields.push_back(f);
    result.added.push_back(f);
  }
  return OkStatus();
}

Status CheckSignOptions(const HttpSigSignOptions& options) {
  if (options.ttl_seconds <= 0 || options.ttl_seconds > 300) {
    return Error(Layer::kUsage, "signature ttl must be in (0, 300] seconds");
  }
  auto label = sf::ParseDictionary(options.label + "=1");
  if (!label.ok() || label->size() != 1 || label->front().key != options.label) {
    return Error(Layer::kUsage, "invalid signature label");
  }
  return OkStatus();
}

void AddTimeParams(sf::InnerList& list, const HttpSigSignOptions& options,
                   const std::string& nonce) {
  int64_t now = NowOr(options.now);
  list.params.emplace_back("created", sf::BareItem::Integer(now));
  list.params.emplace_back("expires", sf::BareItem::Integer(now + options.ttl_seconds));
  list.params.emplace_back("nonce", sf::BareItem::String(nonce));
  list.params.emplace_back("tag", sf::BareItem::String(std::string(kHttpSigTag)));
}

}  // namespace

std::optional<std::string> CombinedFieldValue(const std::vector<HttpField>& fields,
                                              std::string_view name) {
  std::optional<std::string> out;
  std::string want = Lower(name);
  for (const HttpField& f : fields) {
    if (Lower(f.name) != want) {
      continue;
    }
    std::string_view v = TrimOws(f.value);
    if (out) {
      *out += ", ";
      *out += v;
    } else {
      out = std::string(v);
    }
  }
  return out;
}

size_t FieldCount(const std::vector<HttpField>& fields, std::string_view name) {
  std::string want = Lower(name);
  size_t n = 0;
  for (const HttpField& f : fields) {
    n += Lower(f.name) == want ? 1 : 0;
  }
  return n;
}

std::string ContentDigestSha256(std::string_view body) {
  auto digest = Digest(HashAlg::kSha256, AsBytes(body));
  return "sha-256=:" + sf::Base64Encode(digest.ok() ? *digest : Bytes()) + ":";
}

Status CheckContentDigest(std::string_view field_value, std::string_view body) {
  auto dict = sf::ParseDictionary(field_value);
  if (!dict.ok()) {
    return Error(Layer::kPolicy, "Content-Digest: " + dict.error().message());
  }
  const sf::Member* sha256 = nullptr;
  for (const sf::Member& m : *dict) {
    if (m.key == "sha-256") {
      sha256 = &m;
    }
  }
  if (sha256 == nullptr) {
    return Error(Layer::kPolicy, "Content-Digest has no sha-256");
  }
  if (sha256->is_inner_list || sha256->item.value.type != sf::Type::kByteSequence ||
      sha256->item.value.bytes.size() != 32) {
    return Error(Layer::kPolicy, "Content-Digest sha-256 is not a 32-byte byte sequence");
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(HashAlg::kSha256, AsBytes(body)));
  if (!ConstantTimeEqual(digest, sha256->item.value.bytes)) {
    return Error(Layer::kPolicy, "Content-Digest does not match the body");
  }
  return OkStatus();
}

Result<std::string> AudienceFromTargetUri(std::string_view target_uri) {
  WIMSE_ASSIGN_OR_RETURN(TargetUri t, ParseTargetUri(target_uri));
  std::string u = t.without_fragment;
  return u.substr(0, u.find('?'));
}

Result<std::string> BuildSignatureBase(const sf::InnerList& covered, const HttpRequest& request,
                                       const HttpResponse* response) {
  auto target = ParseTargetUri(request.target_uri);
  if (!target.ok()) {
    return Error(Layer::kPolicy, "request target: " + target.error().message());
  }
  std::string base;
  std::set<std::string> seen;
  for (const sf::Item& item : covered.items) {
    if (item.value.type != sf::Type::kString) {
      return Error(Layer::kPolicy, "covered component is not a string");
    }
    const std::string& name = item.value.string;
    bool req = false;
    for (const auto& [pname, pvalue] : item.params) {
      if (pname != "req" || pvalue.type != sf::Type::kBoolean || !pvalue.boolean) {
        return Error(Layer::kPolicy,
                     "unsupported component parameter ;" + pname + " on " + Quoted(name));
      }
      req = true;
    }
    if (req && response == nullptr) {
      return Error(Layer::kPolicy, ";req on " + Quoted(name) + " in a request signature");
    }
    std::string id = ComponentId(item);
    if (!seen.insert(id).second) {
      return Error(Layer::kPolicy, "duplicate covered component " + id);
    }
    if (name.empty() || Lower(name) != name) {
      return Error(Layer::kPolicy, "component name " + Quoted(name) + " is not lower-case");
    }
    bool request_ctx = response == nullptr || req;
    std::string value;
    if (name[0] == '@') {
      if (name == "@status") {
        if (request_ctx) {
          return Error(Layer::kPolicy, "\"@status\" outside a response");
        }
        if (response->status < 100 || response->status > 999) {
          return Error(Layer::kPolicy, "invalid status code");
        }
        value = std::to_string(response->status);
      } else if (!request_ctx) {
        return Error(Layer::kPolicy, Quoted(name) + " in a response needs ;req");
      } else if (name == "@method") {
        value = request.method;
      } else if (name == "@target-uri") {
        value = target->without_fragment;
      } else if (name == "@authority") {
        value = target->authority;
      } else if (name == "@scheme") {
        value = target->scheme;
      } else if (name == "@request-target") {
        value = target->path + (target->has_query ? "?" + target->query : "");
      } else if (name == "@path") {
        value = target->path;
      } else if (name == "@query") {
        value = "?" + target->query;
      } else {
        return Error(Layer::kPolicy, "unsupported derived component " + Quoted(name));
      }
    } else {
      const std::vector<HttpField>& fields = request_ctx ? request.fields : response->fields;
      auto v = CombinedFieldValue(fields, name);
      if (!v) {
        return Error(Layer::kPolicy, "covered field " + Quoted(name) + " is absent");
      }
      value = std::move(*v);
    }
    if (value.find_first_of("\r\n") != std::string::npos) {
      return Error(Layer::kPolicy, "component " + id + " has a line break");
    }
    base += id + ": " + value + "\n";
  }
  WIMSE_ASSIGN_OR_RETURN(std::string params, sf::SerializeInnerList(covered));
  base += "\"@signature-params\": " + params;
  return base;
}

Result<HttpSigResult> SignHttpRequest(Signer& key, std::string_view wit, HttpRequest& request,
                                      const HttpSigSignOptions& options) {
  WIMSE_RETURN_IF_ERROR(CheckSignOptions(options));
  WIMSE_ASSIGN_OR_RETURN(jose::JwsAlg alg, WitCnfAlgForKey(wit, key.public_key()));
  std::string aud = options.audience;
  if (aud.empty()) {
    WIMSE_ASSIGN_OR_RETURN(aud, AudienceFromTargetUri(request.target_uri));
  }
  if (request.method.empty()) {
    return Error(Layer::kUsage, "no request method");
  }
  HttpSigResult result;
  WIMSE_RETURN_IF_ERROR(AddProfileFields(wit, request.body, request.fields, result));
  result.nonce = options.nonce;
  if (result.nonce.empty()) {
    WIMSE_ASSIGN_OR_RETURN(result.nonce, RandomNonce());
  }
  sf::InnerList list;
  for (std::string_view c : {"@method", "@request-target", "@path", "@query"}) {
    list.items.push_back(Component(c));
  }
  for (std::string_view f : {"content-type", "content-digest", "authorization", "txn-token",
                             "workload-identity-token"}) {
    if (FieldCount(request.fields, f) != 0) {
      list.items.push_back(Component(f));
    }
  }
  AddTimeParams(list, options, result.nonce);
  list.params.emplace_back("wimse-aud", sf::BareItem::String(aud));
  if (options.require_signed_response) {
    list.params.emplace_back("wimse-sign-response", sf::BareItem::Boolean(true));
  }
  return SignCommon(key, alg, std::move(list), request, nullptr, request.fields, options.label,
                    std::move(result));
}

Result<HttpSigResult> SignHttpResponse(Signer& key, std::string_view wit,
                                       const HttpRequest& request, std::string_view request_nonce,
                                       HttpResponse& response, const HttpSigSignOptions& options) {
  WIMSE_RETURN_IF_ERROR(CheckSignOptions(options));
  WIMSE_ASSIGN_OR_RETURN(jose::JwsAlg alg, WitCnfAlgForKey(wit, key.public_key()));
  if (request_nonce.empty()) {
    return Error(Layer::kUsage, "no request nonce for wimse-req-nonce");
  }
  HttpSigResult result;
  WIMSE_RETURN_IF_ERROR(AddProfileFields(wit, response.body, response.fields, result));
  result.nonce = options.nonce;
  if (result.nonce.empty()) {
    WIMSE_ASSIGN_OR_RETURN(result.nonce, RandomNonce());
  }
  sf::InnerList list;
  list.items.push_back(Component("@status"));
  for (std::string_view f : {"workload-identity-token", "content-type", "content-digest"}) {
    if (FieldCount(response.fields, f) != 0) {
      list.items.push_back(Component(f));
    }
  }
  for (std::string_view c : {"@method", "@request-target", "@path", "@query"}) {
    list.items.push_back(Component(c, true));
  }
  AddTimeParams(list, options, result.nonce);
  list.params.emplace_back("wimse-req-nonce", sf::BareItem::String(std::string(request_nonce)));
  return SignCommon(key, alg, std::move(list), request, &response, response.fields, options.label,
                    std::move(result));
}

VerifyResult<VerifiedHttpSig> VerifyHttpRequestSignature(const HttpRequest& request,
                                                         const HttpSigVerifyOptions& options) {
  return VerifyAndAudit(request, nullptr, "", options);
}

VerifyResult<VerifiedHttpSig> VerifyHttpResponseSignature(const HttpRequest& request,
                                                          std::string_view request_nonce,
                                                          const HttpResponse& response,
                                                          const HttpSigVerifyOptions& options) {
  return VerifyAndAudit(request, &response, request_nonce, options);
}

Status VerifyMessageSignatureWithKey(const HttpRequest& request, const HttpResponse* response,
                                     std::string_view request_nonce, EVP_PKEY* key,
                                     jose::JwsAlg alg, const HttpSigVerifyOptions& options) {
  VerifiedHttpSig out;
  if (auto f = CheckMessage(request, response, request_nonce, key, alg, options,
                            NowOr(options.wit.now), &out)) {
    return Error(Layer::kPolicy, f->reason);
  }
  return OkStatus();
}

}  // namespace wimse
