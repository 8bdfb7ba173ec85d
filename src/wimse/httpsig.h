// HTTP Message Signatures for WIMSE (draft-ietf-wimse-http-signature-07, a profile of RFC 9421),
// with Content-Digest (RFC 9530, sha-256).
//
// Sign: the workload signs a request (or, as a server, a response) with the key bound by its WIT
// (cnf.jwk), normally a TpmSigner, one TPM2_Sign per message. Label "wimse", tag
// "wimse-workload-to-workload", parameters created, expires, nonce (128 random bits), wimse-aud
// (requests), wimse-sign-response (requests, optional), wimse-req-nonce (responses). Covered:
//   request:  "@method" "@request-target" "@path" "@query" + content-type, content-digest,
//             authorization, txn-token, workload-identity-token when present
//   response: "@status" + content-type, content-digest, workload-identity-token when present,
//             "@method";req "@request-target";req "@path";req "@query";req
// Covering both "@request-target" (http-signature-07) and "@path"+"@query" (the editor's copy
// after -07, which replaced @request-target) satisfies verifiers of either revision.
//
// Verify (strict, in this order): exactly one signature tagged wimse-workload-to-workload (chosen
// by tag, never by label); the WIT (Workload-Identity-Token, exactly one field) validated first
// with VerifyWit; parameters: no alg/keyid, no unknown parameter, created/expires integers,
// nonce string, tag, wimse-aud (requests; must be a configured audience), wimse-req-nonce
// (responses; must equal the request nonce); the validity window (created not in the future,
// expires not passed, expires - created within the maximum lifetime); covered components: no
// duplicates, only supported derived components and parameters, all mandatory ones covered
// (@request-target or @path+@query), every mandatory field present in the message covered;
// Content-Digest present, covered and equal to SHA-256 of the body whenever there is a body;
// the signature over the RFC 9421 §2.5 signature base, with the WIT's cnf key and cnf.jwk.alg
// (JWS algorithms per RFC 9421 §3.3.7: ES256/ES384 raw r||s, RS256, EdDSA); finally the nonce
// against the replay cache. Every call emits one audit record (kind "httpsig").
#ifndef WIMSE_WIMSE_HTTPSIG_H_
#define WIMSE_WIMSE_HTTPSIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/signer.h"
#include "jose/jws.h"
#include "util/result.h"
#include "wimse/http_headers.h"
#include "wimse/replay_cache.h"
#include "wimse/structured_fields.h"
#include "wimse/token_audit.h"
#include "wimse/verify_result.h"
#include "wimse/wit.h"

namespace wimse {

inline constexpr std::string_view kHttpSigTag = "wimse-workload-to-workload";
inline constexpr std::string_view kHttpSigLabel = "wimse";

// A request as the signer sends it / the verifier receives it. `target_uri` is the absolute
// target URI (RFC 9110 §7.1), e.g. "https://svcb.example.com/path?x=1"; it supplies @path,
// @query, @request-target, @authority, @scheme and @target-uri. No body: nullopt.
struct HttpRequest {
  std::string method;
  std::string target_uri;
  std::vector<HttpField> fields;
  std::optional<std::string> body;
};

struct HttpResponse {
  int status = 200;
  std::vector<HttpField> fields;
  std::optional<std::string> body;
};

// All values of field `name` (case-insensitive), each trimmed of SP/HTAB, joined with ", "
// (RFC 9421 §2.1). nullopt when the field is absent.
std::optional<std::string> CombinedFieldValue(const std::vector<HttpField>& fields,
                                              std::string_view name);
// Number of field lines named `name`.
size_t FieldCount(const std::vector<HttpField>& fields, std::string_view name);

// "sha-256=:<base64(SHA-256(body))>:" (RFC 9530).
std::string ContentDigestSha256(std::string_view body);
// Checks a Content-Digest field value against `body`: a valid Dictionary whose sha-256 member
// is a 32-byte Byte Sequence equal to SHA-256(body). Errors (Layer::kPolicy) name the problem.
Status CheckContentDigest(std::string_view field_value, std::string_view body);

// The target URI without query or fragment: the default wimse-aud (and WPT aud).
Result<std::string> AudienceFromTargetUri(std::string_view target_uri);

// The RFC 9421 §2.5 signature base for `covered` (an Inner List of component identifiers with
// the signature parameters), over `request` (and `response` when signing/verifying a response;
// components with ;req then refer to `request`). Supported components: the derived @method,
// @target-uri, @authority, @scheme, @request-target, @path, @query, @status, and header fields
// (lower-case names) without parameters other than ;req. Errors (Layer::kPolicy): unsupported
// component or parameter, duplicate component, a covered field absent from the message.
Result<std::string> BuildSignatureBase(const sf::InnerList& covered, const HttpRequest& request,
                                       const HttpResponse* response);

struct HttpSigSignOptions {
  std::string audience;                  // wimse-aud (requests); empty: AudienceFromTargetUri
  int64_t ttl_seconds = 60;              // expires - created, (0, 300]
  std::optional<int64_t> now;            // created; system clock when unset
  std::string nonce;                     // empty: 128 random bits, base64url
  bool require_signed_response = false;  // adds ;wimse-sign-response (requests)
  std::string label = std::string(kHttpSigLabel);
};

// What the signer added to the message (already appended to its fields).
struct HttpSigResult {
  std::vector<HttpField> added;  // Workload-Identity-Token, Content-Digest, Signature-Input,
                                 // Signature, in that order (the ones that were added)
  std::string nonce;
  std::string signature_base;  // for debugging and tests; contains the WIT, never log it
};

// Signs `request` with `key` (the WIT's cnf key; one SignDigest call). Adds
// Workload-Identity-Token: `wit` unless an identical field is present, Content-Digest when there
// is a body (an existing one must match), then Signature-Input and Signature. Errors:
// Layer::kUsage (bad options, key not the WIT's cnf key, conflicting fields), signer errors.
Result<HttpSigResult> SignHttpRequest(Signer& key, std::string_view wit, HttpRequest& request,
                                      const HttpSigSignOptions& options);

// Signs `response` to `request` (whose WIMSE nonce is `request_nonce`) with the server's key
// and WIT. wimse-req-nonce = `request_nonce`; wimse-aud and wimse-sign-response are not used.
Result<HttpSigResult> SignHttpResponse(Signer& key, std::string_view wit,
                                       const HttpRequest& request, std::string_view request_nonce,
                                       HttpResponse& response, const HttpSigSignOptions& options);

struct HttpSigVerifyOptions {
  WitVerifyOptions wit;                // trust anchors, clock, leeway, limits
  std::vector<std::string> audiences;  // accepted wimse-aud values (requests), from config
  // expires - created may not exceed this. The draft asks for "minutes" and its own response
  // example uses 302 s, so the default is 600 s.
  int64_t max_lifetime_seconds = 600;
  ReplayCache* replay_cache = nullptr;  // optional; borrowed; keyed on (cnf thumbprint, nonce)
  TokenAuditSink* audit = nullptr;      // optional; borrowed; one record per call
};

// An accepted signature and the WIT it was bound to.
struct VerifiedHttpSig {
  VerifiedWit wit;
  std::string label;
  std::string nonce;
  int64_t created = 0;
  int64_t expires = 0;
  std::string aud;                         // wimse-aud (requests)
  bool signed_response_requested = false;  // wimse-sign-response (requests)
  std::vector<std::string> covered;        // component identifiers as serialized
};

// Verifies the WIMSE signature of `request`. Never throws; a rejection carries no claims.
VerifyResult<VerifiedHttpSig> VerifyHttpRequestSignature(const HttpRequest& request,
                                                         const HttpSigVerifyOptions& options);

// Verifies the WIMSE signature of `response` to `request`, whose nonce was `request_nonce`
// (wimse-req-nonce must equal it). `options.audiences` is not used.
VerifyResult<VerifiedHttpSig> VerifyHttpResponseSignature(const HttpRequest& request,
                                                          std::string_view request_nonce,
                                                          const HttpResponse& response,
                                                          const HttpSigVerifyOptions& options);

// The message-signature checks above WITHOUT validating the WIT: the signature is checked with
// `key`/`alg` as given. Only for test vectors whose WIT issuer key is unpublished (the draft's
// examples); anything that authenticates a peer must use the functions above. `response` null:
// verify a request. `request_nonce` is used for responses only. No replay cache, no audit.
Status VerifyMessageSignatureWithKey(const HttpRequest& request, const HttpResponse* response,
                                     std::string_view request_nonce, EVP_PKEY* key,
                                     jose::JwsAlg alg, const HttpSigVerifyOptions& options);

}  // namespace wimse

#endif  // WIMSE_WIMSE_HTTPSIG_H_
