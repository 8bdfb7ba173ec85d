// libFuzzer target (meson -Dfuzz=true with clang): untrusted token bytes through every parser
// on the verification path: strict base64url, strict JSON, compact JWS, JWK, identifiers, and
// the full WIT and WPT verifiers, RFC 8941 structured fields, Content-Digest and the HTTP
// message signature verifier. The input is split at the first newline into a WIT and a WPT
// (and, for HTTP signatures, into a Signature-Input and a Signature value).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jose/base64url.h"
#include "jose/json.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "wimse/http_headers.h"
#include "wimse/httpsig.h"
#include "wimse/identifier.h"
#include "wimse/structured_fields.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wimse;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The V1 draft issuer key: lets well-formed inputs reach the signature and claims checks.
  static TrustAnchors* anchors = [] {
    auto* a = new TrustAnchors();
    (void)a->AddJwks(
        "example.com",
        R"({"keys":[{"kty":"EC","kid":"June 5","crv":"P-256","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"}]})");
    return a;
  }();
  (void)jose::Base64UrlDecode(in);
  auto json = jose::ParseJsonObject(in);
  if (json.ok()) {
    (void)jose::ParsePublicJwk(*json);
    (void)jose::JwkThumbprint(*json);
    (void)jose::OptionalNumericDate(*json, "exp");
  }
  (void)ParseWorkloadIdentifier(in);
  (void)ParseWptAuthorization(in);
  size_t nl = in.find('\n');
  std::string_view wit = in.substr(0, nl);
  std::string_view wpt = nl == std::string_view::npos ? in : in.substr(nl + 1);
  WptVerifyOptions o;
  o.wit.anchors = anchors;
  o.wit.now = 1745509900;
  o.audiences = {"https://workload.example.com/path"};
  (void)VerifyWit(wit, o.wit);
  (void)VerifyWpt(wpt, wit, o);
  auto dict = sf::ParseDictionary(in);
  if (dict.ok()) {
    for (const sf::Member& m : *dict) {
      (void)sf::SerializeInnerList(m.list);
    }
  }
  (void)CheckContentDigest(in, wit);
  HttpRequest req;
  req.method = "POST";
  req.target_uri = "https://workload.example.com/path?q=1";
  req.fields = {{"Signature-Input", std::string(wit)},
                {"Signature", std::string(wpt)},
                {"Workload-Identity-Token", std::string(wit)},
                {"Content-Digest", std::string(wpt)}};
  req.body = std::string(in);
  HttpSigVerifyOptions ho;
  ho.wit = o.wit;
  ho.audiences = o.audiences;
  (void)VerifyHttpRequestSignature(req, ho);
  return 0;
}
