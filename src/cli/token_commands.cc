// wit issue|verify, wpt sign|verify: WIMSE tokens from the command line.
//
// The issuer key is a software PEM private key (an identity server's key); the workload key is a
// TSS2 key file whose private part never leaves the TPM. Tokens are printed on stdout only when
// producing them is the command's purpose; errors never contain a token (only reasons).
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/key_cli_util.h"
#include "cli/token_cli_util.h"
#include "crypto/public_key.h"
#include "jose/json.h"
#include "jose/jws.h"
#include "tpm/workload_key.h"
#include "util/file.h"
#include "wimse/http_headers.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse::cli {

Result<std::string> ReadToken(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path, kMaxTokenFile));
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    return Error(Layer::kParse, path + " is empty");
  }
  return text.substr(begin, end - begin + 1);
}

void AddAnchorOptions(CLI::App* cmd, AnchorOptions& a) {
  cmd->add_option("--issuer-pub", a.issuer_pub, "issuer public key (PEM SubjectPublicKeyInfo)");
  cmd->add_option("--jwks", a.jwks, "issuer JWKS file (keys need a kid); needs --trust-domain");
  cmd->add_option("--trust-domain", a.trust_domain,
                  "bind the issuer key(s) to this trust domain (default for --issuer-pub: any)");
  cmd->add_option("--issuer-kid", a.issuer_kid, "kid of the --issuer-pub key");
  cmd->add_option("--iss", a.iss, "require this iss (issuer allowlist of one)");
}

void WriteOrPrint(GlobalOptions& g, const std::string& what, const std::string& out,
                  const std::string& text) {
  if (out.empty()) {
    std::fputs(text.c_str(), stdout);
    return;
  }
  Status st = WriteFileAtomic(out, text, 0600);
  if (!st.ok()) {
    Fail(g, what, st.error());
  }
}

Result<std::unique_ptr<TrustAnchors>> LoadAnchors(const AnchorOptions& a) {
  auto anchors = std::make_unique<TrustAnchors>();
  if (a.issuer_pub.empty() && a.jwks.empty()) {
    return Error(Layer::kUsage, "need --issuer-pub or --jwks");
  }
  if (!a.issuer_pub.empty()) {
    WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(a.issuer_pub, 64 * 1024));
    auto key = PublicKeyFromPem(pem);
    if (!key.ok()) {
      return key.error().WithContext(a.issuer_pub);
    }
    std::string td = a.trust_domain.empty() ? std::string(kAnyTrustDomain) : a.trust_domain;
    WIMSE_RETURN_IF_ERROR(anchors->AddKey(td, a.issuer_kid, key->get()));
  }
  if (!a.jwks.empty()) {
    if (a.trust_domain.empty()) {
      return Error(Layer::kUsage, "--jwks needs --trust-domain");
    }
    WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(a.jwks, 256 * 1024));
    Status st = anchors->AddJwks(a.trust_domain, text);
    if (!st.ok()) {
      return st.error().WithContext(a.jwks);
    }
  }
  if (!a.iss.empty()) {
    std::string td = a.trust_domain.empty() ? std::string(kAnyTrustDomain) : a.trust_domain;
    anchors->AddIssuer(td, a.iss);
  }
  return anchors;
}

namespace {

struct WitIssueCli {
  std::string issuer_key;
  std::string sub;
  std::string key;
  std::string pub;
  int64_t ttl = 3600;
  std::string iss;
  std::string kid;
  std::string out;
};

void RunWitIssue(GlobalOptions& g, const WitIssueCli& o) {
  const char* what = "wit issue";
  if (o.key.empty() == o.pub.empty()) {
    return Fail(g, what, Error(Layer::kUsage, "give exactly one of --key and --pub"));
  }
  auto issuer = SoftwareSigner::FromPemFile(o.issuer_key);
  if (!issuer.ok()) {
    auto text = ReadFileString(o.issuer_key, 1 << 20);
    if (text.ok() && text->find("-----BEGIN TSS2 PRIVATE KEY-----") != std::string::npos) {
      return Fail(g, what,
                  Error(Layer::kUsage, "--issuer-key " + o.issuer_key +
                                           " is a TPM key; the issuer signs with a software key "
                                           "(PEM private key) held by the issuing service"));
    }
    return Fail(g, what, issuer.error());
  }
  EvpPkeyPtr pub_holder;
  std::shared_ptr<tpm::WorkloadKey> workload;
  EVP_PKEY* workload_pub = nullptr;
  if (!o.key.empty()) {
    // A key file: the public key is in its public area, no TPM I/O. handle:0x81...: one
    // TPM2_ReadPublic.
    auto key = tpm::OpenKey(tpm::SharedContext(tpm::ResolveTcti(g.tcti)), o.key);
    if (!key.ok()) {
      return Fail(g, what, key.error());
    }
    workload = *key;
    workload_pub = workload->public_key();
  } else {
    auto pem = ReadFileString(o.pub, 64 * 1024);
    if (!pem.ok()) {
      return Fail(g, what, pem.error());
    }
    auto key = PublicKeyFromPem(*pem);
    if (!key.ok()) {
      return Fail(g, what, key.error().WithContext(o.pub));
    }
    pub_holder = std::move(key).value();
    workload_pub = pub_holder.get();
  }
  WitRequest req;
  req.sub = o.sub;
  req.iss = o.iss;
  req.workload_key = workload_pub;
  WitIssueOptions io;
  io.kid = o.kid;
  io.ttl_seconds = o.ttl;
  auto wit = IssueWit(**issuer, req, io);
  if (!wit.ok()) {
    return Fail(g, what, wit.error());
  }
  if (!o.out.empty()) {
    Status st = WriteFileAtomic(o.out, *wit + "\n", 0644);
    if (!st.ok()) {
      return Fail(g, what, st.error());
    }
    return;
  }
  std::printf("%s\n", wit->c_str());
}

struct WitVerifyCli {
  std::string wit;
  AnchorOptions anchors;
  int64_t leeway = 30;
  int64_t now = 0;
};

void RunWitVerify(GlobalOptions& g, const WitVerifyCli& o) {
  const char* what = "wit verify";
  auto wit = ReadToken(o.wit);
  if (!wit.ok()) {
    return Fail(g, what, wit.error());
  }
  auto anchors = LoadAnchors(o.anchors);
  if (!anchors.ok()) {
    return Fail(g, what, anchors.error());
  }
  WitVerifyOptions vo;
  vo.anchors = anchors->get();
  vo.leeway_seconds = o.leeway;
  if (o.now != 0) {
    vo.now = o.now;
  }
  auto r = VerifyWit(*wit, vo);
  if (!r.ok()) {
    return Fail(g, what, Error(Layer::kPolicy, "rejected: " + r.reason()));
  }
  std::printf("valid: sub=%s exp=%lld cnf.jwk.alg=%s jkt=%s wth=%s\n", r.claims().sub.uri.c_str(),
              static_cast<long long>(r.claims().exp),
              std::string(jose::JwsAlgName(r.claims().cnf_alg)).c_str(),
              r.claims().cnf_thumbprint.c_str(), r.claims().token_sha256_b64url.c_str());
}

struct WptSignCli {
  std::string key;
  std::string wit;
  std::string aud;
  int64_t ttl = 60;
  bool headers = false;
  bool s2s07 = false;
  std::string out;
  AuthSource auth;
};

// Signer-side checks of the WIT before a proof is made for it (its signature is the
// recipient's business): it has not expired, and its cnf.jwk is the signing key. Both are
// usage errors naming what is wrong; nothing reaches the TPM.
Status CheckWitForProof(const std::string& wit, EVP_PKEY* key, int64_t now) {
  auto jws = jose::ParseCompactJwsUnverified(wit);
  if (!jws.ok()) {
    return Error(Layer::kUsage, "--wit is not a WIT: " + jws.error().message());
  }
  auto claims = jose::ParseJsonObject(jws->payload);
  if (!claims.ok()) {
    return Error(Layer::kUsage, "--wit is not a WIT: " + claims.error().message());
  }
  auto exp = jose::OptionalNumericDate(*claims, "exp");
  if (!exp.ok() || !exp->has_value()) {
    return Error(Layer::kUsage, "--wit has no valid exp claim");
  }
  int64_t expires = (*exp)->Floor();
  if (expires <= now) {
    return Error(Layer::kUsage, "--wit expired " + std::to_string(now - expires) + " s ago (exp " +
                                    std::to_string(expires) +
                                    "); get a fresh WIT before signing a proof for it");
  }
  Status binds = CheckWitBindsKey(wit, key);
  if (!binds.ok()) {
    return Error(Layer::kUsage, "--wit does not bind --key: " + binds.error().message());
  }
  return OkStatus();
}

void RunWptSign(GlobalOptions& g, const WptSignCli& o) {
  const char* what = "wpt sign";
  auto wit = ReadToken(o.wit);
  if (!wit.ok()) {
    return Fail(g, what, wit.error());
  }
  auto key = OpenCliKey(g, o.key, o.auth);
  if (!key.ok()) {
    return Fail(g, what, key.error());
  }
  Status usable = CheckWitForProof(*wit, (*key)->public_key(), std::time(nullptr));
  if (!usable.ok()) {
    return Fail(g, what, usable.error());
  }
  auto signer = std::make_unique<tpm::TpmSigner>(*key);
  WptOptions wo;
  wo.audience = o.aud;
  wo.ttl_seconds = o.ttl;
  auto wpt = SignWpt(*signer, *wit, wo);
  if (!wpt.ok()) {
    return Fail(g, what, wpt.error());
  }
  std::string proof_line = o.s2s07 ? WptLegacyHeaderLine(*wpt) : WptAuthorizationLine(*wpt);
  std::string text = o.headers ? WitHeaderLine(*wit) + "\n" + proof_line + "\n" : *wpt + "\n";
  WriteOrPrint(g, what, o.out, text);
}

struct WptVerifyCli {
  std::string wit;
  std::string wpt;
  std::string headers;
  bool s2s07 = false;
  std::string aud;
  AnchorOptions anchors;
  int64_t leeway = 30;
  int64_t max_lifetime = 300;
  int64_t now = 0;
};

// Header lines "Name: value" from a file (blank lines ignored, CR stripped).
Result<std::vector<HttpField>> ReadFieldLines(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path, 256 * 1024));
  std::vector<HttpField> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty()) {
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      return Error(Layer::kParse, path + ": header line is not 'Name: value'");
    }
    size_t v = line.find_first_not_of(" \t", colon + 1);
    out.push_back({line.substr(0, colon), v == std::string::npos ? "" : line.substr(v)});
  }
  return out;
}

void RunWptVerify(GlobalOptions& g, const WptVerifyCli& o) {
  const char* what = "wpt verify";
  if (o.headers.empty() == (o.wit.empty() || o.wpt.empty())) {
    return Fail(g, what, Error(Layer::kUsage, "give --wit and --wpt, or --headers"));
  }
  auto anchors = LoadAnchors(o.anchors);
  if (!anchors.ok()) {
    return Fail(g, what, anchors.error());
  }
  WptVerifyOptions vo;
  vo.wit.anchors = anchors->get();
  vo.wit.leeway_seconds = o.leeway;
  if (o.now != 0) {
    vo.wit.now = o.now;
  }
  vo.audiences = {o.aud};
  vo.max_lifetime_seconds = o.max_lifetime;
  VerifyResult<VerifiedWpt> r = VerifyResult<VerifiedWpt>::Reject(TokenCheck::kMalformed, "");
  if (!o.headers.empty()) {
    auto fields = ReadFieldLines(o.headers);
    if (!fields.ok()) {
      return Fail(g, what, fields.error());
    }
    WptHttpOptions ho;
    ho.verify = vo;
    ho.accept_s2s07 = o.s2s07;
    r = VerifyWptHttpRequest(*fields, ho);
    if (!r.ok()) {
      // The answer a server gives (wpt-02 §2), on stdout; the reason on stderr.
      HttpErrorResponse e = WptFailureResponse(r);
      std::printf("HTTP/1.1 %d Unauthorized\n", e.status);
      for (const HttpField& f : e.headers) {
        std::printf("%s: %s\n", f.name.c_str(), f.value.c_str());
      }
    }
  } else {
    auto wit = ReadToken(o.wit);
    if (!wit.ok()) {
      return Fail(g, what, wit.error());
    }
    auto wpt = ReadToken(o.wpt);
    if (!wpt.ok()) {
      return Fail(g, what, wpt.error());
    }
    r = VerifyWpt(*wpt, *wit, vo);
  }
  if (!r.ok()) {
    return Fail(g, what, Error(Layer::kPolicy, "rejected: " + r.reason()));
  }
  std::printf("valid: sub=%s aud=%s jti=%s exp=%lld\n", r.claims().wit.sub.uri.c_str(),
              r.claims().aud.c_str(), r.claims().jti.c_str(),
              static_cast<long long>(r.claims().exp));
}

}  // namespace

void RegisterTokenCommands(CLI::App& app, GlobalOptions& g) {
  auto* wit = app.add_subcommand("wit", "Workload Identity Tokens (issue, verify)");
  wit->require_subcommand(1);

  auto* issue = wit->add_subcommand(
      "issue", "Issue a WIT binding a workload key (cnf.jwk) to a Workload Identifier");
  auto wi = std::make_shared<WitIssueCli>();
  issue->add_option("--issuer-key", wi->issuer_key, "issuer private key (PEM, software)")
      ->required();
  issue->add_option("--sub", wi->sub, "Workload Identifier, e.g. spiffe://example.org/svc")
      ->required();
  issue->add_option("--key", wi->key,
                    "workload TSS2 key file or handle:0x81... (its public key becomes cnf.jwk)");
  issue->add_option("--pub", wi->pub, "instead of --key: workload public key (PEM SPKI)");
  issue->add_option("--ttl", wi->ttl, "lifetime in seconds (default 3600, at most 86400)");
  issue->add_option("--iss", wi->iss, "issuer URI (iss claim; omitted by default)");
  issue->add_option("--kid", wi->kid, "issuer key id (kid header)");
  issue->add_option("--out", wi->out, "write the WIT here instead of stdout");
  issue->callback([&g, wi] { RunWitIssue(g, *wi); });

  auto* wverify = wit->add_subcommand("verify", "Verify a WIT against issuer trust anchors");
  auto wv = std::make_shared<WitVerifyCli>();
  wverify->add_option("--wit", wv->wit, "file holding the WIT")->required();
  AddAnchorOptions(wverify, wv->anchors);
  wverify->add_option("--leeway", wv->leeway, "clock leeway in seconds (default 30)");
  wverify->add_option("--now", wv->now, "verify as of this time (seconds since the epoch)");
  wverify->callback([&g, wv] { RunWitVerify(g, *wv); });

  auto* wpt = app.add_subcommand("wpt", "Workload Proof Tokens (sign in the TPM, verify)");
  wpt->require_subcommand(1);

  auto* sign = wpt->add_subcommand("sign", "Sign a WPT for a WIT with the TPM workload key");
  auto ps = std::make_shared<WptSignCli>();
  sign->add_option("--key", ps->key, "workload TSS2 key file (the WIT's cnf key)")->required();
  AddAuthOptions(sign, ps->auth);
  sign->add_option("--wit", ps->wit,
                   "file holding the WIT (refused when expired or when its "
                   "cnf key is not --key)")
      ->required();
  sign->add_option("--aud", ps->aud, "target URI without query or fragment")->required();
  sign->add_option("--ttl", ps->ttl, "lifetime in seconds (default 60, at most 300)");
  sign->add_flag("--headers", ps->headers,
                 "print 'Workload-Identity-Token: <WIT>' and 'Authorization: WPT <WPT>' lines "
                 "(for curl -H @file)");
  sign->add_flag("--s2s07", ps->s2s07,
                 "with --headers: 'Workload-Proof-Token: <WPT>' instead of Authorization "
                 "(for peers on s2s-protocol-07 / wpt-01)");
  sign->add_option("--out", ps->out, "write the output here (mode 0600) instead of stdout");
  sign->callback([&g, ps] { RunWptSign(g, *ps); });

  auto* pverify = wpt->add_subcommand("verify", "Verify a WPT and its WIT");
  auto pv = std::make_shared<WptVerifyCli>();
  pverify->add_option("--wit", pv->wit, "file holding the WIT");
  pverify->add_option("--wpt", pv->wpt, "file holding the WPT");
  pverify->add_option("--headers", pv->headers,
                      "instead of --wit/--wpt: received header lines (Workload-Identity-Token, "
                      "Authorization: WPT); a rejection also prints the 401 answer on stdout");
  pverify->add_flag("--s2s07", pv->s2s07,
                    "with --headers: also accept the s2s-protocol-07 Workload-Proof-Token header");
  pverify->add_option("--aud", pv->aud, "the audience this verifier expects")->required();
  AddAnchorOptions(pverify, pv->anchors);
  pverify->add_option("--leeway", pv->leeway, "clock leeway in seconds (default 30)");
  pverify->add_option("--max-lifetime", pv->max_lifetime,
                      "reject WPTs expiring later than this many seconds (default 300)");
  pverify->add_option("--now", pv->now, "verify as of this time (seconds since the epoch)");
  pverify->callback([&g, pv] { RunWptVerify(g, *pv); });
}

}  // namespace wimse::cli
