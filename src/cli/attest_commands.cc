// attest, appraise: TPM evidence (quote + certify) for a workload key, and its appraisal.
#include <cstdio>
#include <ctime>
#include <memory>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <optional>
#include <vector>
#include "attest/ear.h"
#include "attest/enrollment.h"
#include "attest/eventlog.h"
#include "attest/evidence.h"
#include "attest/policy.h"
#include "attest/verifier.h"
#include "cli/commands.h"
#include "cli/key_cli_util.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "jose/json.h"
#include "tpm/ek.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse::cli {

namespace {

Result<Bytes> ParseNonce(const std::string& hex) {
  Result<Bytes> nonce = HexDecode(hex);
  if (!nonce.ok()) {
    return Error(Layer::kUsage, "--nonce is not hex: " + nonce.error().message());
  }
  return nonce;
}

// The AK public area as a PEM SubjectPublicKeyInfo.
Result<std::string> AkPublicPem(ByteView ak_public) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, UnmarshalTpm2bPublic(ak_public));
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr key, PublicKeyFromTpmPublic(pub.publicArea));
  return PublicKeyToPem(key.get());
}

struct AttestOptions {
  std::string key;
  std::string nonce;
  std::string out;
  std::string ak_out;
  std::string uefi_log = attest::kDefaultUefiLogPath;
  std::string ima_log = attest::kDefaultImaLogPath;
  AuthSource auth;
};

void RunAttest(GlobalOptions& g, const AttestOptions& o) {
  auto nonce = ParseNonce(o.nonce);
  if (!nonce.ok()) return Fail(g, "attest", nonce.error());
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto key = OpenCliKey(g, o.key, o.auth);
  if (!key.ok()) return Fail(g, "attest", key.error());
  // TPM2_Certify needs the key's authorization (ADMIN role). Without an auth value for a key
  // whose file demands one, stop before the TPM counts a dictionary-attack strike.
  if ((*key)->auth_required_by_file() && !o.auth.any()) {
    return Fail(
        g, "attest",
        Error(Layer::kUsage, "key " + o.key +
                                 " needs an auth value (its key file has no "
                                 "emptyAuth field); give it with --auth-file, --auth-env or "
                                 "--auth-prompt (nothing was sent to the TPM)"));
  }
  attest::EvidenceOptions eo;
  eo.uefi_log_path = o.uefi_log;
  eo.ima_log_path = o.ima_log;
  // KEY.creation (written by keygen): also certify the key's creation (TPM2_CertifyCreation).
  auto creation = attest::LoadKeyCreation(o.key, **key);
  if (!creation.ok()) return Fail(g, "attest", creation.error());
  eo.creation = std::move(*creation);
  auto evidence = attest::ProduceEvidence(*ctx, **key, *nonce, eo);
  if (!evidence.ok()) return Fail(g, "attest", evidence.error());
  std::string ak_pem;
  if (!o.ak_out.empty()) {
    auto pem = AkPublicPem(evidence->ak_public);
    if (!pem.ok()) return Fail(g, "attest", pem.error());
    ak_pem = *pem;
  }
  std::string cmw = attest::WrapCmw(attest::EncodeEvidenceJson(*evidence)) + "\n";
  auto s = WriteFileAtomic(o.out, cmw, 0644);
  if (!s.ok()) return Fail(g, "attest", s.error());
  if (!o.ak_out.empty()) {
    s = WriteFileAtomic(o.ak_out, ak_pem, 0644);
    if (!s.ok()) return Fail(g, "attest", s.error());
  }
  std::printf("wrote %s (%zu bytes, %s)\n", o.out.c_str(), cmw.size(), attest::kCmwMediaType);
}

struct AppraiseOptions {
  std::string evidence;
  std::string nonce;
  std::string ak_pub;
  std::string key_out;
  std::string policy;
  std::string out;
  std::string signing_key;
  std::string signing_tpm_key;
  std::string registry;
  std::string identity;
  std::string clock_state;
  int64_t nonce_issued = 0;
  bool allow_unenrolled_ak = false;
};

Result<std::string> ReadText(const std::string& path) { return ReadFileString(path, 16 << 20); }

Result<std::optional<attest::ClockState>> LoadClock(const std::string& path) {
  auto text = ReadFileString(path, 4096);
  if (!text.ok()) {
    return std::optional<attest::ClockState>();  // first appraisal
  }
  WIMSE_ASSIGN_OR_RETURN(jose::Json j, jose::ParseJsonObject(*text));
  if (!j["clock"].is_number_unsigned() || !j["reset_count"].is_number_unsigned() ||
      !j["restart_count"].is_number_unsigned()) {
    return Error(Layer::kParse, "clock state file is malformed");
  }
  return std::optional<attest::ClockState>(attest::ClockState{j["clock"].get<uint64_t>(),
                                                              j["reset_count"].get<uint32_t>(),
                                                              j["restart_count"].get<uint32_t>()});
}

void RunAppraise(GlobalOptions& g, const AppraiseOptions& o) {
  attest::AppraisalOptions opts;
  auto nonce = ParseNonce(o.nonce);
  if (!nonce.ok()) return Fail(g, "appraise", nonce.error());
  opts.expected_nonce = *nonce;
  opts.now_unix = static_cast<int64_t>(std::time(nullptr));
  opts.allow_unenrolled_ak = o.allow_unenrolled_ak;
  if (!o.ak_pub.empty()) {
    auto pem = ReadFileString(o.ak_pub, 64 << 10);
    if (!pem.ok()) return Fail(g, "appraise", pem.error());
    auto key = PublicKeyFromPem(*pem);
    if (!key.ok()) return Fail(g, "appraise", key.error().WithContext(o.ak_pub));
    auto der = PublicKeyToDer(key->get());
    if (!der.ok()) return Fail(g, "appraise", der.error());
    opts.trusted_ak_spki = *der;
  }
  auto text = ReadFileString(o.evidence, attest::kMaxEvidenceSize);
  if (!text.ok()) return Fail(g, "appraise", text.error());
  attest::AttestationPolicy policy;
  if (!o.policy.empty()) {
    auto ptext = ReadText(o.policy);
    if (!ptext.ok()) return Fail(g, "appraise", ptext.error());
    auto p = attest::DecodePolicy(*ptext);
    if (!p.ok()) return Fail(g, "appraise", p.error().WithContext(o.policy));
    policy = *p;
    opts.policy = &policy;
    opts.nonce_issued_unix = o.nonce_issued;
  }
  if (!o.registry.empty()) {
    auto rtext = ReadText(o.registry);
    if (!rtext.ok()) return Fail(g, "appraise", rtext.error());
    auto reg = attest::DecodeRegistry(*rtext);
    if (!reg.ok()) return Fail(g, "appraise", reg.error().WithContext(o.registry));
    auto it = reg->find(o.identity);
    if (it == reg->end()) {
      return Fail(g, "appraise",
                  Error(Layer::kPolicy, "identity \"" + o.identity + "\" is not enrolled"));
    }
    opts.enrolled_ak_name = it->second.ak_name;
    opts.enrolled_ek_certified = !it->second.ek_cert_sha256.empty();
  }
  if (!o.clock_state.empty()) {
    auto c = LoadClock(o.clock_state);
    if (!c.ok()) return Fail(g, "appraise", c.error());
    opts.last_clock = *c;
  }
  attest::AppraisalResult r = attest::AppraiseCmw(*text, opts);
  std::printf("%s\n", r.Summary().c_str());
  if (!o.out.empty()) {
    std::unique_ptr<Signer> signer;
    if (!o.signing_key.empty()) {
      auto sw = SoftwareSigner::FromPemFile(o.signing_key);
      if (!sw.ok()) return Fail(g, "appraise", sw.error());
      signer = std::move(*sw);
    } else if (!o.signing_tpm_key.empty()) {
      auto t = tpm::OpenTpmSigner(tpm::ResolveTcti(g.tcti), o.signing_tpm_key);
      if (!t.ok()) return Fail(g, "appraise", t.error());
      signer = std::move(*t);
    } else {
      return Fail(g, "appraise",
                  Error(Layer::kUsage, "--out needs --signing-key or --signing-tpm-key"));
    }
    attest::EarOptions eo;
    eo.iat = opts.now_unix;
    eo.policy_id = policy.id;
    auto jwt = attest::SignEar(*signer, attest::BuildEarClaims(r, opts.expected_nonce, eo));
    if (!jwt.ok()) return Fail(g, "appraise", jwt.error());
    auto s = WriteFileAtomic(o.out, *jwt + "\n", 0644);
    if (!s.ok()) return Fail(g, "appraise", s.error());
  }
  if (!r.affirming()) {
    g.exit_code = 1;
    return;
  }
  if (!o.clock_state.empty() && r.new_clock) {
    jose::Json c{{"clock", r.new_clock->clock},
                 {"reset_count", r.new_clock->reset_count},
                 {"restart_count", r.new_clock->restart_count}};
    auto s = WriteFileAtomic(o.clock_state, c.dump() + "\n", 0644);
    if (!s.ok()) return Fail(g, "appraise", s.error());
    if (r.rebooted) {
      std::printf("note: the TPM was reset (reboot) since the last appraisal\n");
    }
  }
  if (!o.key_out.empty()) {
    auto key = PublicKeyFromDer(r.workload_key_spki);
    if (!key.ok()) return Fail(g, "appraise", key.error());
    auto pem = PublicKeyToPem(key->get());
    if (!pem.ok()) return Fail(g, "appraise", pem.error());
    auto s = WriteFileAtomic(o.key_out, *pem, 0644);
    if (!s.ok()) return Fail(g, "appraise", s.error());
  }
}

// --- ak create | challenge | activate | enroll -------------------------------------------

struct AkOptions {
  std::string ek = "rsa2048";
  std::string identity;
  std::string out;
  std::string request;
  std::string challenge;
  std::string state;
  std::string answer;
  std::string registry;
  std::vector<std::string> ek_roots;
  std::vector<std::string> ek_intermediates;
  std::vector<std::string> allow_ek;
};

Result<std::vector<Bytes>> PemCertsToDer(const std::vector<std::string>& files) {
  std::vector<Bytes> out;
  for (const std::string& f : files) {
    WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(f, 1 << 20));
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    size_t before = out.size();
    while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509Ptr cert(c);
      unsigned char* der = nullptr;
      int len = i2d_X509(cert.get(), &der);
      if (len > 0) {
        out.emplace_back(der, der + len);
      }
      OPENSSL_free(der);
    }
    ERR_clear_error();
    if (out.size() == before) {
      return Error(Layer::kParse, f + " holds no PEM certificate");
    }
  }
  return out;
}

void RunAkCreate(GlobalOptions& g, const AkOptions& o) {
  auto type = tpm::EkTypeFromName(o.ek);
  if (!type.ok()) return Fail(g, "ak create", type.error());
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto req = attest::ProduceEnrollmentRequest(*ctx, *type, o.identity);
  if (!req.ok()) return Fail(g, "ak create", req.error());
  auto s = WriteFileAtomic(o.out, attest::EncodeEnrollmentRequest(*req) + "\n", 0644);
  if (!s.ok()) return Fail(g, "ak create", s.error());
  std::printf("wrote %s (EK %s%s)\n", o.out.c_str(), o.ek.c_str(),
              req->ek_cert.empty() ? ", no EK certificate in NV" : ", with EK certificate");
}

Result<attest::EnrollmentRegistry> LoadRegistry(const std::string& path) {
  auto text = ReadFileString(path, 16 << 20);
  if (!text.ok()) {
    return attest::EnrollmentRegistry{};  // a new registry
  }
  return attest::DecodeRegistry(*text);
}

void RunAkChallenge(GlobalOptions& g, const AkOptions& o) {
  auto text = ReadText(o.request);
  if (!text.ok()) return Fail(g, "ak challenge", text.error());
  auto req = attest::DecodeEnrollmentRequest(*text);
  if (!req.ok()) return Fail(g, "ak challenge", req.error());
  attest::EnrollmentPolicy policy;
  auto roots = PemCertsToDer(o.ek_roots);
  if (!roots.ok()) return Fail(g, "ak challenge", roots.error());
  policy.ek_roots = *roots;
  auto inter = PemCertsToDer(o.ek_intermediates);
  if (!inter.ok()) return Fail(g, "ak challenge", inter.error());
  policy.ek_intermediates = *inter;
  policy.allowed_ek_sha256 = o.allow_ek;
  auto reg = LoadRegistry(o.registry);
  if (!reg.ok()) return Fail(g, "ak challenge", reg.error());
  auto it = reg->find(req->identity);
  auto begun = attest::BeginEnrollment(*req, policy, it == reg->end() ? nullptr : &it->second);
  if (!begun.ok()) return Fail(g, "ak challenge", begun.error());
  auto s = WriteFileAtomic(o.state, attest::EncodePendingEnrollment(begun->second) + "\n", 0600);
  if (!s.ok()) return Fail(g, "ak challenge", s.error());
  s = WriteFileAtomic(o.out, attest::EncodeEnrollmentChallenge(begun->first) + "\n", 0644);
  if (!s.ok()) return Fail(g, "ak challenge", s.error());
  std::printf("wrote %s\n", o.out.c_str());
}

void RunAkActivate(GlobalOptions& g, const AkOptions& o) {
  auto type = tpm::EkTypeFromName(o.ek);
  if (!type.ok()) return Fail(g, "ak activate", type.error());
  auto text = ReadText(o.challenge);
  if (!text.ok()) return Fail(g, "ak activate", text.error());
  auto ch = attest::DecodeEnrollmentChallenge(*text);
  if (!ch.ok()) return Fail(g, "ak activate", ch.error());
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto answer = attest::ActivateEnrollmentChallenge(*ctx, *type, *ch);
  if (!answer.ok()) return Fail(g, "ak activate", answer.error());
  // The answer is a one-time secret for the verifier: written 0600, never printed.
  auto s = WriteFileAtomic(o.out, AsString(answer->view()), 0600);
  if (!s.ok()) return Fail(g, "ak activate", s.error());
  std::printf("wrote %s\n", o.out.c_str());
}

void RunAkEnroll(GlobalOptions& g, const AkOptions& o) {
  auto text = ReadText(o.state);
  if (!text.ok()) return Fail(g, "ak enroll", text.error());
  auto pending = attest::DecodePendingEnrollment(*text);
  if (!pending.ok()) return Fail(g, "ak enroll", pending.error());
  auto answer = ReadFileBytes(o.answer, 64);
  if (!answer.ok()) return Fail(g, "ak enroll", answer.error());
  auto reg = LoadRegistry(o.registry);
  if (!reg.ok()) return Fail(g, "ak enroll", reg.error());
  auto it = reg->find(pending->request.identity);
  auto rec = attest::FinishEnrollment(*pending, *answer, it == reg->end() ? nullptr : &it->second);
  if (!rec.ok()) return Fail(g, "ak enroll", rec.error());
  (*reg)[rec->identity] = *rec;
  auto s = WriteFileAtomic(o.registry, attest::EncodeRegistry(*reg), 0644);
  if (!s.ok()) return Fail(g, "ak enroll", s.error());
  std::printf("enrolled %s: AK %s\n", rec->identity.c_str(), HexEncode(rec->ak_name).c_str());
}

void RegisterAkCommands(CLI::App& app, GlobalOptions& g) {
  auto* ak =
      app.add_subcommand("ak", "Attestation key enrolment (EK-bound, credential activation)");
  ak->require_subcommand(1);
  auto o = std::make_shared<AkOptions>();
  auto* create = ak->add_subcommand("create",
                                    "Agent: EK public + certificate and AK public as an "
                                    "enrolment request");
  create->add_option("--ek", o->ek, "EK template: rsa2048 (default), ecc-p256, ecc-p384");
  create->add_option("--identity", o->identity, "identity to bind")->required();
  create->add_option("--out", o->out, "request file to write")->required();
  create->callback([&g, o] { RunAkCreate(g, *o); });
  auto* challenge = ak->add_subcommand("challenge",
                                       "Verifier: check the request, MakeCredential "
                                       "in software (no TPM)");
  challenge->add_option("--request", o->request, "request from `ak create`")->required();
  challenge->add_option("--ek-roots", o->ek_roots, "PEM file(s) of accepted EK roots");
  challenge->add_option("--ek-intermediates", o->ek_intermediates, "PEM intermediates");
  challenge->add_option("--allow-ek", o->allow_ek, "hex SHA-256 of a certless EK to accept");
  challenge->add_option("--registry", o->registry, "enrolment registry (JSON)")->required();
  challenge->add_option("--state", o->state, "pending state to write (hash only)")->required();
  challenge->add_option("--out", o->out, "challenge file to write")->required();
  challenge->callback([&g, o] { RunAkChallenge(g, *o); });
  auto* activate = ak->add_subcommand("activate", "Agent: TPM2_ActivateCredential");
  activate->add_option("--ek", o->ek, "EK template used in `ak create`");
  activate->add_option("--challenge", o->challenge, "challenge file")->required();
  activate->add_option("--out", o->out, "answer file to write (0600, a secret)")->required();
  activate->callback([&g, o] { RunAkActivate(g, *o); });
  auto* enroll = ak->add_subcommand("enroll",
                                    "Verifier: check the answer and pin identity, EK, "
                                    "AK in the registry");
  enroll->add_option("--state", o->state, "pending state from `ak challenge`")->required();
  enroll->add_option("--answer", o->answer, "answer from `ak activate`")->required();
  enroll->add_option("--registry", o->registry, "enrolment registry (JSON)")->required();
  enroll->callback([&g, o] { RunAkEnroll(g, *o); });
}

// --- policy capture ------------------------------------------------------------------------

struct PolicyOptions {
  std::string evidence;
  std::string nonce;
  std::string out;
  std::string id = "urn:wimse-tpm:policy:captured";
  std::string bank = "sha256";
  std::vector<uint32_t> pcrs = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<std::string> ek_roots;
};

void RunPolicyCapture(GlobalOptions& g, const PolicyOptions& o) {
  auto nonce = ParseNonce(o.nonce);
  if (!nonce.ok()) return Fail(g, "policy capture", nonce.error());
  auto bank = attest::BankAlgFromName(o.bank);
  if (!bank.ok()) return Fail(g, "policy capture", bank.error());
  attest::AttestationPolicy p;
  p.pcrs.bank = *bank;
  p.allow_sha1 = *bank == TPM2_ALG_SHA1;
  p.pcrs.mask = 0;
  for (uint32_t i : o.pcrs) {
    if (i > 23) return Fail(g, "policy capture", Error(Layer::kUsage, "PCR index > 23"));
    p.pcrs.mask |= 1u << i;
  }
  attest::AppraisalOptions opts;
  opts.expected_nonce = *nonce;
  opts.policy = &p;
  // Capture records reference values from a host the operator vouches for; it issues nothing,
  // and every later appraisal against the policy still needs an enrolled or pinned AK.
  opts.allow_unenrolled_ak = true;
  auto text = ReadFileString(o.evidence, attest::kMaxEvidenceSize);
  if (!text.ok()) return Fail(g, "policy capture", text.error());
  attest::AppraisalResult r = attest::AppraiseCmw(*text, opts);
  if (!r.affirming()) {
    return Fail(g, "policy capture",
                Error(Layer::kPolicy, "evidence does not appraise: " + r.Summary()));
  }
  attest::AttestationPolicy captured = attest::CapturePolicy(r, p.pcrs, o.id);
  for (const std::string& f : o.ek_roots) {
    auto pem = ReadFileString(f, 1 << 20);
    if (!pem.ok()) return Fail(g, "policy capture", pem.error());
    captured.ek_roots_pem.push_back(*pem);
  }
  auto s = WriteFileAtomic(o.out, attest::EncodePolicy(captured), 0644);
  if (!s.ok()) return Fail(g, "policy capture", s.error());
  std::printf("wrote %s (%zu reference values, %zu allowed event digests)\n", o.out.c_str(),
              captured.reference_values.size(), captured.allowed_event_digests.size());
}

void RegisterPolicyCommands(CLI::App& app, GlobalOptions& g) {
  auto* policy = app.add_subcommand("policy", "Appraisal policies");
  policy->require_subcommand(1);
  auto o = std::make_shared<PolicyOptions>();
  auto* capture = policy->add_subcommand(
      "capture",
      "Write a policy from a known-good host's evidence (reference PCR values and "
      "allowed event digests)");
  capture->add_option("--evidence", o->evidence, "evidence (CMW) from `attest`")->required();
  capture->add_option("--nonce", o->nonce, "its nonce, hex")->required();
  capture->add_option("--out", o->out, "policy file to write")->required();
  capture->add_option("--id", o->id, "policy id (ear_appraisal_policy_ids)");
  capture->add_option("--bank", o->bank, "PCR bank (default sha256)");
  capture->add_option("--pcrs", o->pcrs, "PCR indices (default 0-7)")->delimiter(',');
  capture->add_option("--ek-roots", o->ek_roots, "PEM EK roots to include");
  capture->callback([&g, o] { RunPolicyCapture(g, *o); });
}

// --- eventlog ---------------------------------------------------------------------------------

struct EventlogOptions {
  std::string file;
  std::string format = "text";
  std::string log_format;
};

void RunEventlog(GlobalOptions& g, const EventlogOptions& o) {
  auto data = ReadFileBytes(o.file, attest::LogLimits{}.max_bytes);
  if (!data.ok()) return Fail(g, "eventlog", data.error());
  if (data->empty()) {
    return Fail(g, "eventlog", Error(Layer::kParse, "event log: empty file").WithContext(o.file));
  }
  attest::LogFormat fmt = attest::DetectLogFormat(*data);
  if (!o.log_format.empty()) {
    auto f = attest::LogFormatFromName(o.log_format);
    if (!f.ok()) return Fail(g, "eventlog", f.error());
    fmt = *f;
  }
  auto log = attest::ParseEventLog(fmt, *data);
  if (!log.ok()) return Fail(g, "eventlog", log.error().WithContext(o.file));
  std::vector<uint16_t> banks;
  if (fmt == attest::LogFormat::kTcgPcClient) {
    for (const auto& [alg, size] : log->algorithms) {
      if (attest::BankDigestSize(alg) != 0) banks.push_back(alg);
    }
  } else {
    banks = {TPM2_ALG_SHA1, TPM2_ALG_SHA256};
  }
  jose::Json events = jose::Json::array();
  for (size_t i = 0; i < log->events.size(); ++i) {
    const attest::LogEvent& e = log->events[i];
    jose::Json d = jose::Json::object();
    for (const auto& [alg, digest] : e.digests) {
      d[attest::BankNameFromAlg(alg)] = HexEncode(digest);
    }
    jose::Json je{{"index", i}, {"pcr", e.pcr}, {"digests", d}};
    if (fmt == attest::LogFormat::kTcgPcClient) {
      je["type"] = e.type;
      je["data_size"] = e.data.size();
    } else {
      je["template"] = e.template_name;
      je["file_digest"] = e.file_digest;
      je["path"] = e.path;
    }
    events.push_back(je);
  }
  jose::Json pcrs = jose::Json::object();
  for (uint16_t bank : banks) {
    auto replay = attest::ReplayLog(*log, bank);
    jose::Json b = jose::Json::object();
    if (replay.ok()) {
      for (const auto& [pcr, v] : *replay) b[std::to_string(pcr)] = HexEncode(v);
    } else {
      b["error"] = replay.error().message();  // e.g. an event without a digest of this bank
    }
    pcrs[attest::BankNameFromAlg(bank)] = b;
  }
  if (o.format == "json") {
    jose::Json out{
        {"format", std::string(attest::LogFormatName(fmt))}, {"events", events}, {"pcrs", pcrs}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("format: %s, %zu events\n", std::string(attest::LogFormatName(fmt)).c_str(),
              log->events.size());
  for (const auto& je : events) {
    std::printf("- event %zu: pcr %u", je["index"].get<size_t>(), je["pcr"].get<uint32_t>());
    if (je.contains("type")) std::printf(" type 0x%x", je["type"].get<uint32_t>());
    if (je.contains("path"))
      std::printf(" %s %s", je["file_digest"].get<std::string>().c_str(),
                  je["path"].get<std::string>().c_str());
    std::printf("\n");
    for (const auto& [alg, d] : je["digests"].items()) {
      std::printf("    %s: %s\n", alg.c_str(), d.get<std::string>().c_str());
    }
  }
  std::printf("pcrs:\n");
  for (const auto& [bank, values] : pcrs.items()) {
    std::printf("  %s:\n", bank.c_str());
    for (const auto& [pcr, v] : values.items()) {
      std::printf("    %s: %s\n", pcr.c_str(), v.get<std::string>().c_str());
    }
  }
}

void RegisterEventlogCommand(CLI::App& app, GlobalOptions& g) {
  auto* cmd = app.add_subcommand("eventlog",
                                 "Show a UEFI (TCG crypto-agile) or IMA (ima-ng) log "
                                 "and the PCR values it replays to, per bank");
  auto o = std::make_shared<EventlogOptions>();
  cmd->add_option("FILE", o->file, "the log")->required();
  cmd->add_option("--format", o->format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--log-format", o->log_format,
                  "tcg-pc-client-crypto-agile, ima-binary or ima-ascii (default: detect)");
  cmd->callback([&g, o] { RunEventlog(g, *o); });
}

}  // namespace

void RegisterAttestCommands(CLI::App& app, GlobalOptions& g) {
  auto* attest_cmd = app.add_subcommand(
      "attest",
      "Collect TPM evidence for a workload key: TPM2_Quote (sha256 PCRs 0-7) and TPM2_Certify "
      "by the endorsement-hierarchy AK, bound to the verifier's nonce, as a CMW record");
  auto ao = std::make_shared<AttestOptions>();
  attest_cmd->add_option("--key", ao->key, "TSS2 key file of the workload key")->required();
  AddAuthOptions(attest_cmd, ao->auth);
  attest_cmd->add_option("--nonce", ao->nonce, "verifier nonce, hex (16..32 bytes)")->required();
  attest_cmd->add_option("--out", ao->out, "evidence file to write (CMW JSON record)")->required();
  attest_cmd->add_option("--ak-out", ao->ak_out, "also write the AK public key (PEM SPKI) here");
  attest_cmd->callback([&g, ao] { RunAttest(g, *ao); });

  auto* appraise =
      app.add_subcommand("appraise",
                         "Appraise TPM evidence (no TPM needed). Prints \"affirming\" (exit 0) or "
                         "\"contraindicated: <reason>; ...\" (exit 1)");
  auto po = std::make_shared<AppraiseOptions>();
  appraise->add_option("--evidence", po->evidence, "evidence file (CMW JSON record)")->required();
  appraise->add_option("--nonce", po->nonce, "the nonce issued for this round, hex")->required();
  appraise->add_option("--ak-pub", po->ak_pub,
                       "trusted (pinned) AK public key, PEM SPKI; an AK must be pinned with this "
                       "or enrolled (--registry/--identity), else the appraisal fails closed");
  appraise->add_flag("--allow-unenrolled-ak", po->allow_unenrolled_ak,
                     "accept the evidence's own AK if its attributes pass (proves nothing about "
                     "TPM residency: anyone can forge such an AK in software; tests only)");
  appraise->add_option("--key-out", po->key_out,
                       "when affirming, write the certified workload key (PEM SPKI) here");
  appraise->add_option("--policy", po->policy, "appraisal policy (JSON, docs/attestation.md)");
  appraise->add_option("--nonce-issued", po->nonce_issued,
                       "when the nonce was issued (Unix seconds), for max_evidence_age_seconds");
  appraise->add_option("--out", po->out, "write the EAR (JWT, ES256) here, whatever the verdict");
  appraise->add_option("--signing-key", po->signing_key, "verifier key for the EAR (PEM)");
  appraise->add_option("--signing-tpm-key", po->signing_tpm_key,
                       "verifier key for the EAR (TSS2 key file in the TPM)");
  appraise->add_option("--registry", po->registry, "AK enrolment registry (from `ak enroll`)");
  appraise->add_option("--identity", po->identity, "enrolled identity the evidence must come from");
  appraise->add_option("--clock-state", po->clock_state,
                       "per-AK clock state file: read as the last values, updated when affirming");
  appraise->callback([&g, po] { RunAppraise(g, *po); });
  attest_cmd->add_option("--uefi-log", ao->uefi_log, "UEFI event log to attach ('' for none)");
  attest_cmd->add_option("--ima-log", ao->ima_log, "IMA log to attach ('' for none)");

  RegisterAkCommands(app, g);
  RegisterPolicyCommands(app, g);
  RegisterEventlogCommand(app, g);
}

}  // namespace wimse::cli
