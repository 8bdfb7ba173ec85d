// Unit tests for RFC 8941 structured fields and the WIMSE HTTP message signature profile
// (src/wimse/httpsig): the WG's published examples (tests/data/tokens/httpsig-wg-examples.json),
// byte-exact signature bases, sign/verify round trips for requests and responses with software
// keys, and every rejection path with its reason.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/json.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "util/file.h"
#include "wimse/httpsig.h"
#include "wimse/replay_cache.h"
#include "wimse/structured_fields.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"

namespace wimse {
namespace {

using jose::Json;

constexpr int64_t kNow = 1767225600;
constexpr char kTarget[] = "https://api.example.org/v1/charge?currency=eur";
constexpr char kAud[] = "https://api.example.org/v1/charge";

Json LoadVectors() {
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  auto text = ReadFileString(std::string(root != nullptr ? root : ".") +
                             "/tests/data/tokens/httpsig-wg-examples.json");
  EXPECT_TRUE(text.ok());
  return Json::parse(text.ok() ? *text : "{}");
}

std::vector<HttpField> Fields(const Json& j) {
  std::vector<HttpField> out;
  for (const Json& f : j) {
    out.push_back({f[0].get<std::string>(), f[1].get<std::string>()});
  }
  return out;
}

// The cnf.jwk key of a WIT, read WITHOUT verifying the WIT (for the unverifiable examples).
EvpPkeyPtr CnfKeyUnverified(const std::string& wit) {
  auto jws = jose::ParseCompactJwsUnverified(wit);
  EXPECT_TRUE(jws.ok());
  auto claims = jose::ParseJsonObject(jws->payload);
  auto jwk = jose::ParsePublicJwk((*claims)["cnf"]["jwk"]);
  EXPECT_TRUE(jwk.ok()) << jwk.error().ToString();
  return std::move(jwk->key);
}

std::string FieldValue(const std::vector<HttpField>& fields, const std::string& name) {
  return CombinedFieldValue(fields, name).value_or("");
}

// --- Structured fields -------------------------------------------------------------------

TEST(StructuredFields, ParsesSignatureInputAndReserializesCanonically) {
  std::string member =
      "(\"@method\" \"@path\";req);created=1;nonce=\"a\\\"b\";wimse-sign-response;x=?0;d=1.50";
  auto dict = sf::ParseDictionary("sig1=" + member + ", sig2=:AAEC:, flag");
  ASSERT_TRUE(dict.ok()) << dict.error().ToString();
  ASSERT_EQ(dict->size(), 3u);
  EXPECT_TRUE((*dict)[0].is_inner_list);
  EXPECT_EQ((*dict)[0].list.items[1].value.string, "@path");
  EXPECT_EQ(sf::FindParam((*dict)[0].list.params, "nonce")->string, "a\"b");
  EXPECT_EQ((*dict)[1].item.value.bytes, (Bytes{0, 1, 2}));
  EXPECT_TRUE((*dict)[2].item.value.boolean);
  // Canonical form: true booleans bare, decimals without trailing zeros.
  EXPECT_EQ(*sf::SerializeInnerList((*dict)[0].list),
            "(\"@method\" \"@path\";req);created=1;nonce=\"a\\\"b\";wimse-sign-response;x=?0;"
            "d=1.5");
}

TEST(StructuredFields, RejectsMalformed) {
  for (const char* bad : {"a=(\"x\"", "a=1,", "a=1 b=2", "A=1", "a=\"\x01\"",
                          "a=:AA=:", "a=:AAE:", "a=:AB==:", "a=1234567890123456", "a=1.2345",
                          "a=?2", "a=(\"x\");p=1;p=2", "a=1, a=2", "a=\"unterminated"}) {
    EXPECT_FALSE(sf::ParseDictionary(bad).ok()) << bad;
  }
  EXPECT_EQ(sf::ParseDictionary("a=1, a=2").error().message(),
            "structured field: duplicate dictionary key \"a\" at byte 6");
}

TEST(ContentDigest, Rfc9530AndStrictCheck) {
  // RFC 9530 §2 example: {"hello": "world"} plus LF.
  std::string body = "{\"hello\": \"world\"}\n";
  EXPECT_EQ(ContentDigestSha256(body), "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:");
  EXPECT_TRUE(CheckContentDigest(ContentDigestSha256(body), body).ok());
  EXPECT_TRUE(CheckContentDigest("sha-512=:AAAA:, " + ContentDigestSha256(body), body).ok());
  EXPECT_EQ(CheckContentDigest(ContentDigestSha256(body), body + " ").error().message(),
            "Content-Digest does not match the body");
  EXPECT_EQ(CheckContentDigest("sha-512=:AAAA:", body).error().message(),
            "Content-Digest has no sha-256");
  EXPECT_EQ(CheckContentDigest("sha-256=:AAAA:", body).error().message(),
            "Content-Digest sha-256 is not a 32-byte byte sequence");
}

// --- The WG's published examples ---------------------------------------------------------

class WgExamples : public ::testing::Test {
 protected:
  void SetUp() override {
    v_ = LoadVectors();
    ASSERT_EQ(v_["vectors"].size(), 3u);
    const Json& r = v_["vectors"][0];
    request_.method = r["method"];
    request_.target_uri = r["target_uri"];
    request_.fields = Fields(r["fields"]);
    opts_.audiences = {r["audience"].get<std::string>()};
    opts_.wit.now = r["now"].get<int64_t>();
  }
  Json v_;
  HttpRequest request_;
  HttpSigVerifyOptions opts_;
};

TEST_F(WgExamples, RequestSignatureBaseIsByteExactAndVerifies) {
  std::string wit = FieldValue(request_.fields, "workload-identity-token");
  auto dict = sf::ParseDictionary(FieldValue(request_.fields, "signature-input"));
  ASSERT_TRUE(dict.ok());
  auto base = BuildSignatureBase((*dict)[0].list, request_, nullptr);
  ASSERT_TRUE(base.ok()) << base.error().ToString();
  EXPECT_EQ(*base,
            "\"@method\": GET\n"
            "\"@path\": /gimme-ice-cream\n"
            "\"@query\": ?flavor=vanilla\n"
            "\"workload-identity-token\": " +
                wit +
                "\n"
                "\"@signature-params\": (\"@method\" \"@path\" \"@query\" "
                "\"workload-identity-token\");created=1788298924;expires=1788299224;"
                "nonce=\"abcd1111\";tag=\"wimse-workload-to-workload\";"
                "wimse-aud=\"https://svcb.example.com/gimme-ice-cream\";wimse-sign-response");
  EvpPkeyPtr key = CnfKeyUnverified(wit);
  Status st =
      VerifyMessageSignatureWithKey(request_, nullptr, "", key.get(), jose::JwsAlg::kEdDsa, opts_);
  EXPECT_TRUE(st.ok()) << st.error().ToString();

  // Any change breaks it.
  HttpRequest other = request_;
  other.target_uri = "https://svcb.example.com/gimme-ice-cream?flavor=chocolate";
  EXPECT_EQ(
      VerifyMessageSignatureWithKey(other, nullptr, "", key.get(), jose::JwsAlg::kEdDsa, opts_)
          .error()
          .message(),
      "signature does not verify");
  HttpSigVerifyOptions late = opts_;
  late.wit.now = 1788299224 + 31;
  EXPECT_EQ(
      VerifyMessageSignatureWithKey(request_, nullptr, "", key.get(), jose::JwsAlg::kEdDsa, late)
          .error()
          .message(),
      "signature expired");
  HttpSigVerifyOptions aud = opts_;
  aud.audiences = {"https://svcc.example.com/gimme-ice-cream"};
  EXPECT_EQ(
      VerifyMessageSignatureWithKey(request_, nullptr, "", key.get(), jose::JwsAlg::kEdDsa, aud)
          .error()
          .message(),
      "wimse-aud does not match");
}

TEST_F(WgExamples, ResponseVerifiesAgainstTheRequestNonce) {
  const Json& r = v_["vectors"][1];
  HttpResponse resp;
  resp.status = r["status"];
  resp.fields = Fields(r["fields"]);
  resp.body = r["body"].get<std::string>();
  HttpSigVerifyOptions o = opts_;
  o.wit.now = r["now"].get<int64_t>();
  EvpPkeyPtr key = CnfKeyUnverified(FieldValue(resp.fields, "workload-identity-token"));
  Status st = VerifyMessageSignatureWithKey(request_, &resp, "abcd1111", key.get(),
                                            jose::JwsAlg::kEdDsa, o);
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(
      VerifyMessageSignatureWithKey(request_, &resp, "abcd9999", key.get(), jose::JwsAlg::kEdDsa, o)
          .error()
          .message(),
      "wimse-req-nonce does not match the request nonce");
  HttpResponse body = resp;
  body.body = "No ice cream today.\n";
  EXPECT_EQ(
      VerifyMessageSignatureWithKey(request_, &body, "abcd1111", key.get(), jose::JwsAlg::kEdDsa, o)
          .error()
          .message(),
      "Content-Digest does not match the body");
  HttpResponse status = resp;
  status.status = 200;
  EXPECT_EQ(VerifyMessageSignatureWithKey(request_, &status, "abcd1111", key.get(),
                                          jose::JwsAlg::kEdDsa, o)
                .error()
                .message(),
            "signature does not verify");
}

TEST_F(WgExamples, OlderRequestTargetExampleVerifiesButLacksWimseAud) {
  const Json& r = v_["vectors"][2];
  HttpRequest req;
  req.method = r["method"];
  req.target_uri = r["target_uri"];
  req.fields = Fields(r["fields"]);
  std::string wit = FieldValue(req.fields, "workload-identity-token");
  auto dict = sf::ParseDictionary(FieldValue(req.fields, "signature-input"));
  ASSERT_TRUE(dict.ok());
  auto base = BuildSignatureBase((*dict)[0].list, req, nullptr);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->substr(0, 66),
            "\"@method\": GET\n\"@request-target\": /gimme-ice-cream?flavor=vanilla\n");
  auto sigs = sf::ParseDictionary(FieldValue(req.fields, "signature"));
  EvpPkeyPtr key = CnfKeyUnverified(wit);
  EXPECT_TRUE(
      jose::VerifyJwsSignature(key.get(), jose::JwsAlg::kEdDsa, *base, (*sigs)[0].item.value.bytes)
          .ok());
  HttpSigVerifyOptions o;
  o.wit.now = r["now"].get<int64_t>();
  o.audiences = {"https://example.com/gimme-ice-cream"};
  EXPECT_EQ(VerifyMessageSignatureWithKey(req, nullptr, "", key.get(), jose::JwsAlg::kEdDsa, o)
                .error()
                .message(),
            "missing signature parameter wimse-aud");
}

// --- Our signatures -----------------------------------------------------------------------

class RecordingSink : public TokenAuditSink {
 public:
  void Record(const TokenAuditRecord& r) override { records.push_back(r); }
  std::vector<TokenAuditRecord> records;
};

class HttpSigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    issuer_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    client_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    server_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP384)).value();
    ASSERT_TRUE(anchors_.AddKey("example.org", "k1", issuer_->public_key()).ok());
    client_wit_ = Wit(*client_, "spiffe://example.org/client");
    server_wit_ = Wit(*server_, "spiffe://example.org/server");
    opts_.wit.anchors = &anchors_;
    opts_.wit.now = kNow + 5;
    opts_.audiences = {kAud};
    sign_.now = kNow;
  }
  std::string Wit(Signer& key, const std::string& sub) {
    WitRequest req;
    req.sub = sub;
    req.workload_key = key.public_key();
    WitIssueOptions io;
    io.kid = "k1";
    io.now = kNow;
    return *IssueWit(*issuer_, req, io);
  }
  HttpRequest Post() {
    HttpRequest r;
    r.method = "POST";
    r.target_uri = kTarget;
    r.fields = {{"Content-Type", "application/json"}, {"Host", "api.example.org"}};
    r.body = "{\"amount\":1}";
    return r;
  }
  HttpRequest Signed(HttpSigSignOptions o = {}) {
    if (!o.now) {
      o.now = kNow;
    }
    HttpRequest r = Post();
    auto s = SignHttpRequest(*client_, client_wit_, r, o);
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    nonce_ = s->nonce;
    return r;
  }
  std::string Reject(const HttpRequest& r) {
    auto v = VerifyHttpRequestSignature(r, opts_);
    EXPECT_FALSE(v.ok());
    return v.reason();
  }
  // Replaces the Signature-Input member of the (signed) request and re-signs the new base with
  // the client key, so only the rule under test is violated.
  HttpRequest ResignWith(HttpRequest r, const std::string& member) {
    std::vector<HttpField> kept;
    for (const HttpField& f : r.fields) {
      if (f.name != "Signature-Input" && f.name != "Signature") {
        kept.push_back(f);
      }
    }
    r.fields = kept;
    auto dict = sf::ParseDictionary("wimse=" + member);
    EXPECT_TRUE(dict.ok()) << member;
    auto base = BuildSignatureBase((*dict)[0].list, r, nullptr);
    Bytes sig;
    if (base.ok()) {
      sig = *client_->SignDigest(HashAlg::kSha256, *Digest(HashAlg::kSha256, AsBytes(*base)));
    }
    r.fields.push_back({"Signature-Input", "wimse=" + member});
    r.fields.push_back({"Signature", "wimse=:" + sf::Base64Encode(sig) + ":"});
    return r;
  }
  std::string Params(const std::string& extra = "") {
    return ";created=" + std::to_string(kNow) + ";expires=" + std::to_string(kNow + 60) +
           ";nonce=\"n1\";tag=\"wimse-workload-to-workload\";wimse-aud=\"" + kAud + "\"" + extra;
  }
  static constexpr char kAll[] =
      "(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
      "\"workload-identity-token\")";

  std::unique_ptr<SoftwareSigner> issuer_, client_, server_;
  TrustAnchors anchors_;
  std::string client_wit_, server_wit_, nonce_;
  HttpSigVerifyOptions opts_;
  HttpSigSignOptions sign_;
};

TEST_F(HttpSigTest, SignedRequestHasTheProfileAndVerifies) {
  HttpSigSignOptions so;
  so.nonce = "nonce-1";
  so.require_signed_response = true;
  so.now = kNow;
  HttpRequest r = Post();
  auto s = SignHttpRequest(*client_, client_wit_, r, so);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  ASSERT_EQ(s->added.size(), 4u);
  EXPECT_EQ(s->added[0].name, "Workload-Identity-Token");
  EXPECT_EQ(s->added[1].name, "Content-Digest");
  EXPECT_EQ(s->added[1].value, ContentDigestSha256("{\"amount\":1}"));
  EXPECT_EQ(s->added[2].value,
            "wimse=(\"@method\" \"@request-target\" \"@path\" \"@query\" \"content-type\" "
            "\"content-digest\" \"workload-identity-token\");created=1767225600;"
            "expires=1767225660;nonce=\"nonce-1\";tag=\"wimse-workload-to-workload\";"
            "wimse-aud=\"https://api.example.org/v1/charge\";wimse-sign-response");
  EXPECT_EQ(s->signature_base.substr(0, 127),
            "\"@method\": POST\n\"@request-target\": /v1/charge?currency=eur\n\"@path\": "
            "/v1/charge\n\"@query\": ?currency=eur\n\"content-type\": applicat");
  auto sig = sf::ParseDictionary(s->added[3].value);
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ((*sig)[0].item.value.bytes.size(), 64u);  // ES256 raw r||s

  RecordingSink sink;
  opts_.audit = &sink;
  auto v = VerifyHttpRequestSignature(r, opts_);
  ASSERT_TRUE(v.ok()) << v.reason();
  EXPECT_EQ(v.claims().wit.sub.uri, "spiffe://example.org/client");
  EXPECT_EQ(v.claims().nonce, "nonce-1");
  EXPECT_EQ(v.claims().aud, kAud);
  EXPECT_TRUE(v.claims().signed_response_requested);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(sink.records[0].kind, "httpsig");
  EXPECT_TRUE(sink.records[0].accepted);
  EXPECT_EQ(sink.records[0].sub, "spiffe://example.org/client");
  EXPECT_EQ(sink.records[0].token_sha256.size(), 64u);
}

TEST_F(HttpSigTest, SignedResponseVerifiesWithTheServersWit) {
  HttpRequest r = Signed();
  HttpResponse resp;
  resp.status = 201;
  resp.fields = {{"Content-Type", "text/plain"}};
  resp.body = "created\n";
  HttpSigSignOptions so;
  so.now = kNow + 1;
  auto s = SignHttpResponse(*server_, server_wit_, r, nonce_, resp, so);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  auto input = FieldValue(resp.fields, "signature-input");
  EXPECT_NE(input.find("(\"@status\" \"workload-identity-token\" \"content-type\" "
                       "\"content-digest\" \"@method\";req \"@request-target\";req "
                       "\"@path\";req \"@query\";req)"),
            std::string::npos);
  EXPECT_NE(input.find("wimse-req-nonce=\"" + nonce_ + "\""), std::string::npos);
  auto sig = sf::ParseDictionary(FieldValue(resp.fields, "signature"));
  EXPECT_EQ((*sig)[0].item.value.bytes.size(), 96u);  // ES384 raw r||s
  RecordingSink sink;
  opts_.audit = &sink;
  auto v = VerifyHttpResponseSignature(r, nonce_, resp, opts_);
  ASSERT_TRUE(v.ok()) << v.reason();
  EXPECT_EQ(v.claims().wit.sub.uri, "spiffe://example.org/server");
  EXPECT_EQ(VerifyHttpResponseSignature(r, "other", resp, opts_).reason(),
            "wimse-req-nonce does not match the request nonce");
  HttpResponse changed = resp;
  changed.status = 200;
  EXPECT_EQ(VerifyHttpResponseSignature(r, nonce_, changed, opts_).reason(),
            "signature does not verify");
  HttpRequest other = r;
  other.method = "PUT";
  EXPECT_EQ(VerifyHttpResponseSignature(other, nonce_, resp, opts_).reason(),
            "signature does not verify");
  ASSERT_EQ(sink.records.size(), 4u);
  EXPECT_EQ(sink.records[0].kind, "httpsig-response");
  EXPECT_FALSE(sink.records[1].accepted);
  EXPECT_EQ(sink.records[1].sub, "");
}

TEST_F(HttpSigTest, RejectsTamperingWithReasons) {
  HttpRequest r = Signed();
  HttpRequest body = r;
  body.body = "{\"amount\":1000}";
  EXPECT_EQ(Reject(body), "Content-Digest does not match the body");
  HttpRequest path = r;
  path.target_uri = "https://api.example.org/v1/refund?currency=eur";
  EXPECT_EQ(Reject(path), "signature does not verify");
  HttpRequest ctype = r;
  ctype.fields[0].value = "text/plain";
  EXPECT_EQ(Reject(ctype), "signature does not verify");
  HttpRequest unsigned_auth = r;
  unsigned_auth.fields.push_back({"Authorization", "Bearer abc"});
  EXPECT_EQ(Reject(unsigned_auth), "\"authorization\" present but not covered");
  HttpRequest txn = r;
  txn.fields.push_back({"Txn-Token", "abc"});
  EXPECT_EQ(Reject(txn), "\"txn-token\" present but not covered");
  HttpRequest no_digest = r;
  for (auto it = no_digest.fields.begin(); it != no_digest.fields.end(); ++it) {
    if (it->name == "Content-Digest") {
      no_digest.fields.erase(it);
      break;
    }
  }
  EXPECT_EQ(Reject(no_digest), "body without Content-Digest");
  HttpRequest two_wits = r;
  two_wits.fields.push_back({"Workload-Identity-Token", client_wit_});
  EXPECT_EQ(Reject(two_wits), "WIT: more than one Workload-Identity-Token");
  HttpRequest no_input = Post();
  no_input.fields.push_back({"Workload-Identity-Token", client_wit_});
  EXPECT_EQ(Reject(no_input), "no Signature-Input");
}

TEST_F(HttpSigTest, RejectsWrongWitAndWrongKey) {
  // The WIT names the server's key but the client signed: the cnf key does not verify.
  HttpRequest r = Signed();
  for (HttpField& f : r.fields) {
    if (f.name == "Workload-Identity-Token") {
      f.value = server_wit_;
    }
  }
  // The WIT's cnf key is P-384 (ES384): the client's 64-byte ES256 signature cannot be one.
  EXPECT_EQ(Reject(r), "ECDSA signature has the wrong length");
  HttpRequest other_td = Signed();
  TrustAnchors empty;
  opts_.wit.anchors = &empty;
  EXPECT_EQ(Reject(other_td).substr(0, 5), "WIT: ");
  // The signer refuses a WIT that does not bind its key.
  HttpRequest x = Post();
  EXPECT_EQ(SignHttpRequest(*client_, server_wit_, x, sign_).error().message(),
            "the WIT's cnf.jwk is not this key");
}

TEST_F(HttpSigTest, SelectsByTagAndRejectsAmbiguity) {
  HttpRequest r = Signed();
  // An extra non-WIMSE signature is ignored.
  HttpRequest extra = r;
  extra.fields.push_back({"Signature-Input", "other=(\"@method\");created=1"});
  extra.fields.push_back({"Signature", "other=:AAAA:"});
  EXPECT_TRUE(VerifyHttpRequestSignature(extra, opts_).ok());
  HttpRequest two = r;
  two.fields.push_back(
      {"Signature-Input", "second=(\"@method\");tag=\"wimse-workload-to-workload\""});
  EXPECT_EQ(Reject(two), "ambiguous wimse signature: two carry the tag");
  HttpRequest none = ResignWith(Post(), std::string(kAll) + ";created=1;tag=\"other\"");
  none.fields.push_back({"Workload-Identity-Token", client_wit_});
  EXPECT_EQ(Reject(none), "no wimse signature (no tag wimse-workload-to-workload)");
  HttpRequest dup_label = r;
  dup_label.fields.push_back({"Signature-Input", "wimse=(\"@method\")"});
  EXPECT_EQ(Reject(dup_label).substr(0, 59),
            "Signature-Input: structured field: duplicate dictionary key");
}

TEST_F(HttpSigTest, EveryParameterRule) {
  HttpRequest base = Post();
  base.fields.push_back({"Workload-Identity-Token", client_wit_});
  base.fields.push_back({"Content-Digest", ContentDigestSha256(*base.body)});
  struct Case {
    std::string member;
    std::string reason;
  };
  std::string all = kAll;
  std::string t0 = std::to_string(kNow);
  std::vector<Case> cases = {
      {all + Params(";alg=\"ecdsa-p256-sha256\""), "forbidden signature parameter alg"},
      {all + Params(";keyid=\"k\""), "forbidden signature parameter keyid"},
      {all + Params(";foo=1"), "unexpected signature parameter foo"},
      {all + Params(";wimse-req-nonce=\"x\""), "unexpected signature parameter wimse-req-nonce"},
      {all + ";expires=1;nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"a\"",
       "missing signature parameter created"},
      {all + ";created=" + t0 + ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"a\"",
       "missing signature parameter expires"},
      {all + ";created=" + t0 + ";expires=" + t0 +
           ";tag=\"wimse-workload-to-workload\";wimse-aud=\"a\"",
       "missing signature parameter nonce"},
      {all + ";created=" + t0 + ";expires=" + t0 +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\"",
       "missing signature parameter wimse-aud"},
      {all + ";created=\"1\";expires=1;nonce=\"n\";tag=\"wimse-workload-to-workload\";"
             "wimse-aud=\"a\"",
       "created/expires are not non-negative integers"},
      {all + ";created=" + t0 + ";expires=" + t0 +
           ";nonce=n;tag=\"wimse-workload-to-workload\";wimse-aud=\"a\"",
       "nonce is not a non-empty string"},
      {all + Params(";wimse-sign-response=1"), "wimse-sign-response is not a boolean"},
      {all + ";created=" + std::to_string(kNow + 100) + ";expires=" + std::to_string(kNow + 160) +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"" + kAud + "\"",
       "created in the future"},
      {all + ";created=" + t0 + ";expires=" + std::to_string(kNow - 1) +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"" + kAud + "\"",
       "expires before created"},
      {all + ";created=" + std::to_string(kNow - 100) + ";expires=" + std::to_string(kNow - 40) +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"" + kAud + "\"",
       "signature expired"},
      {all + ";created=" + t0 + ";expires=" + std::to_string(kNow + 601) +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"" + kAud + "\"",
       "signature lifetime too long"},
      {all + ";created=" + t0 + ";expires=" + std::to_string(kNow + 60) +
           ";nonce=\"n\";tag=\"wimse-workload-to-workload\";wimse-aud=\"https://api.example.org/\"",
       "wimse-aud does not match"},
      {"(\"@request-target\" \"content-type\" \"content-digest\" \"workload-identity-token\")" +
           Params(),
       "\"@method\" not covered"},
      {"(\"@method\" \"@path\" \"content-type\" \"content-digest\" \"workload-identity-token\")" +
           Params(),
       "neither \"@request-target\" nor \"@path\" and \"@query\" covered"},
      {"(\"@method\" \"@request-target\" \"content-digest\" \"workload-identity-token\")" +
           Params(),
       "\"content-type\" present but not covered"},
      {"(\"@method\" \"@request-target\" \"content-type\" \"workload-identity-token\")" + Params(),
       "\"content-digest\" present but not covered"},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\")" + Params(),
       "\"workload-identity-token\" present but not covered"},
      {"(\"@method\" \"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\")" +
           Params(),
       "duplicate covered component \"@method\""},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"@query-param\";name=\"a\")" +
           Params(),
       "unsupported component parameter ;name on \"@query-param\""},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"@foo\")" +
           Params(),
       "unsupported derived component \"@foo\""},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"x-absent\")" +
           Params(),
       "covered field \"x-absent\" is absent"},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"content-type\";sf)" +
           Params(),
       "unsupported component parameter ;sf on \"content-type\""},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"@status\")" +
           Params(),
       "\"@status\" outside a response"},
      {"(\"@method\" \"@request-target\" \"content-type\" \"content-digest\" "
       "\"workload-identity-token\" \"@path\";req)" +
           Params(),
       ";req on \"@path\" in a request signature"},
      {"(\"@method\" \"@request-target\" \"Content-Type\" \"content-digest\" "
       "\"workload-identity-token\")" +
           Params(),
       "\"content-type\" present but not covered"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Reject(ResignWith(base, c.member)), c.reason) << c.member;
  }
  // The valid member passes through the same path.
  EXPECT_TRUE(VerifyHttpRequestSignature(ResignWith(base, all + Params()), opts_).ok());
  // A signature over a different base fails.
  HttpRequest bad = ResignWith(base, all + Params());
  bad.fields.back().value = "wimse=:" + sf::Base64Encode(Bytes(64, 0)) + ":";
  EXPECT_EQ(Reject(bad), "ECDSA signature r or s out of range");
  bad.fields.back().value = "wimse=:" + sf::Base64Encode(Bytes(72, 1)) + ":";
  EXPECT_EQ(Reject(bad), "ECDSA signature has the wrong length");
}

TEST_F(HttpSigTest, NonceReplayIsRejected) {
  InMemoryReplayCache cache;
  opts_.replay_cache = &cache;
  HttpRequest r = Signed();
  EXPECT_TRUE(VerifyHttpRequestSignature(r, opts_).ok());
  EXPECT_EQ(Reject(r), "nonce replayed");
  // A fresh signature with a fresh nonce passes.
  EXPECT_TRUE(VerifyHttpRequestSignature(Signed(), opts_).ok());
  // A rejected message does not consume its nonce.
  HttpRequest fresh = Signed();
  HttpRequest tampered = fresh;
  tampered.method = "GET";
  EXPECT_EQ(Reject(tampered), "signature does not verify");
  EXPECT_TRUE(VerifyHttpRequestSignature(fresh, opts_).ok());
}

TEST_F(HttpSigTest, BodylessGetAndDerivedComponents) {
  HttpRequest r;
  r.method = "GET";
  r.target_uri = "HTTPS://API.example.org:443/v1/charge#frag";
  HttpSigSignOptions so;
  so.now = kNow;
  auto s = SignHttpRequest(*client_, client_wit_, r, so);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->added.size(), 3u);  // no Content-Digest without a body
  EXPECT_NE(s->signature_base.find("\"@query\": ?\n"), std::string::npos);
  EXPECT_NE(s->signature_base.find("\"@request-target\": /v1/charge\n"), std::string::npos);
  EXPECT_NE(s->signature_base.find("wimse-aud=\"HTTPS://API.example.org:443/v1/charge\""),
            std::string::npos);
  sf::InnerList l;
  for (const char* c : {"@authority", "@scheme", "@target-uri"}) {
    sf::Item i;
    i.value = sf::BareItem::String(c);
    l.items.push_back(i);
  }
  auto base = BuildSignatureBase(l, r, nullptr);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(*base,
            "\"@authority\": api.example.org\n\"@scheme\": https\n\"@target-uri\": "
            "HTTPS://API.example.org:443/v1/charge\n\"@signature-params\": (\"@authority\" "
            "\"@scheme\" \"@target-uri\")");
  opts_.audiences = {"HTTPS://API.example.org:443/v1/charge"};
  EXPECT_TRUE(VerifyHttpRequestSignature(r, opts_).ok());
}

TEST_F(HttpSigTest, MultipleFieldLinesAreCombined) {
  std::vector<HttpField> f = {{"Accept", " a "}, {"X", "1"}, {"accept", "b\t"}};
  EXPECT_EQ(*CombinedFieldValue(f, "ACCEPT"), "a, b");
  EXPECT_FALSE(CombinedFieldValue(f, "y").has_value());
  EXPECT_EQ(FieldCount(f, "accept"), 2u);
}

}  // namespace
}  // namespace wimse
