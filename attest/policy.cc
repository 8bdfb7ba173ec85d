#include "attest/policy.h"

#include "attest/eventlog.h"
#include "jose/json.h"

namespace wimse::attest {

namespace {

using jose::Json;

Error PolicyError(const std::string& what) { return Error(Layer::kParse, "policy: " + what); }

Result<std::set<Bytes>> DigestList(const Json& events, const char* name) {
  std::set<Bytes> out;
  auto it = events.find(name);
  if (it == events.end()) {
    return out;
  }
  if (!it->is_array()) {
    return PolicyError(std::string("events.") + name + " is not an array");
  }
  for (const Json& d : *it) {
    Result<Bytes> b = d.is_string() ? HexDecode(d.get<std::string>())
                                    : Result<Bytes>(PolicyError("digest is not a string"));
    if (!b.ok() || b->size() < 20 || b->size() > 64) {
      return PolicyError(std::string("events.") + name + " has an invalid hex digest");
    }
    out.insert(std::move(b).value());
  }
  return out;
}

Json HexList(const std::set<Bytes>& s) {
  Json a = Json::array();
  for (const Bytes& b : s) {
    a.push_back(HexEncode(b));
  }
  return a;
}

}  // namespace

Result<AttestationPolicy> DecodePolicy(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json j, jose::ParseJsonObject(json, jose::JsonLimits{8 << 20, 8}));
  AttestationPolicy p;
  auto profile = j.find("profile");
  if (profile == j.end() || !profile->is_string() || *profile != kPolicyProfile) {
    return PolicyError(std::string("profile is not ") + kPolicyProfile);
  }
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string() || id->get<std::string>().empty()) {
      return PolicyError("id is not a non-empty string");
    }
    p.id = id->get<std::string>();
  }
  if (auto sha1 = j.find("allow_sha1"); sha1 != j.end()) {
    if (!sha1->is_boolean()) {
      return PolicyError("allow_sha1 is not a boolean");
    }
    p.allow_sha1 = sha1->get<bool>();
  }
  auto bank = j.find("pcr_bank");
  if (bank == j.end() || !bank->is_string()) {
    return PolicyError("pcr_bank is missing");
  }
  Result<uint16_t> alg = BankAlgFromName(bank->get<std::string>());
  if (!alg.ok()) {
    return PolicyError(alg.error().message());
  }
  if (*alg == TPM2_ALG_SHA1 && !p.allow_sha1) {
    return PolicyError("pcr_bank sha1 needs \"allow_sha1\": true");
  }
  p.pcrs.bank = *alg;
  auto pcrs = j.find("pcrs");
  if (pcrs == j.end() || !pcrs->is_array() || pcrs->empty()) {
    return PolicyError("pcrs is not a non-empty array");
  }
  p.pcrs.mask = 0;
  for (const Json& i : *pcrs) {
    if (!i.is_number_unsigned() || i.get<uint64_t>() > 23) {
      return PolicyError("pcrs holds a value that is not a PCR index 0..23");
    }
    p.pcrs.mask |= 1u << i.get<uint32_t>();
  }
  size_t dsize = BankDigestSize(p.pcrs.bank);
  if (auto refs = j.find("reference_values"); refs != j.end()) {
    if (!refs->is_object()) {
      return PolicyError("reference_values is not an object");
    }
    for (const auto& [k, v] : refs->items()) {
      if (k.empty() || k.size() > 2 || k.find_first_not_of("0123456789") != std::string::npos ||
          (k.size() == 2 && k[0] == '0') || std::stoul(k) > 23) {
        return PolicyError("reference_values has an invalid PCR index \"" + k + "\"");
      }
      Result<Bytes> b = v.is_string() ? HexDecode(v.get<std::string>())
                                      : Result<Bytes>(PolicyError("not a string"));
      if (!b.ok() || b->size() != dsize) {
        return PolicyError("reference_values." + k + " is not a " + std::to_string(dsize) +
                           "-byte hex digest");
      }
      p.reference_values[static_cast<uint32_t>(std::stoul(k))] = std::move(b).value();
    }
  }
  if (auto events = j.find("events"); events != j.end()) {
    if (!events->is_object()) {
      return PolicyError("events is not an object");
    }
    WIMSE_ASSIGN_OR_RETURN(p.allowed_event_digests, DigestList(*events, "allowed"));
    WIMSE_ASSIGN_OR_RETURN(p.denied_event_digests, DigestList(*events, "denied"));
  }
  if (auto roots = j.find("ek_roots"); roots != j.end()) {
    if (!roots->is_array()) {
      return PolicyError("ek_roots is not an array");
    }
    for (const Json& r : *roots) {
      if (!r.is_string()) {
        return PolicyError("ek_roots holds a non-string");
      }
      p.ek_roots_pem.push_back(r.get<std::string>());
    }
  }
  if (auto age = j.find("max_evidence_age_seconds"); age != j.end()) {
    if (!age->is_number_unsigned() || age->get<uint64_t>() > 86400 * 365) {
      return PolicyError("max_evidence_age_seconds is not an integer 0..31536000");
    }
    p.max_evidence_age_seconds = age->get<int64_t>();
  }
  return p;
}

std::string EncodePolicy(const AttestationPolicy& p) {
  Json pcrs = Json::array();
  for (uint32_t i = 0; i < 24; ++i) {
    if (p.pcrs.mask & (1u << i)) {
      pcrs.push_back(i);
    }
  }
  Json refs = Json::object();
  for (const auto& [pcr, v] : p.reference_values) {
    refs[std::to_string(pcr)] = HexEncode(v);
  }
  Json j = Json::object();
  j["profile"] = kPolicyProfile;
  j["id"] = p.id;
  j["pcr_bank"] = BankNameFromAlg(p.pcrs.bank);
  j["allow_sha1"] = p.allow_sha1;
  j["pcrs"] = pcrs;
  j["reference_values"] = refs;
  j["events"] = Json{{"allowed", HexList(p.allowed_event_digests)},
                     {"denied", HexList(p.denied_event_digests)}};
  j["ek_roots"] = p.ek_roots_pem;
  j["max_evidence_age_seconds"] = p.max_evidence_age_seconds;
  return j.dump(2) + "\n";
}

AttestationPolicy CapturePolicy(const AppraisalResult& result, const PcrBankSelection& selection,
                                std::string id) {
  AttestationPolicy p;
  p.id = std::move(id);
  p.pcrs = selection;
  p.allow_sha1 = selection.bank == TPM2_ALG_SHA1;
  p.reference_values = result.quoted_pcrs;
  p.allowed_event_digests = result.event_digests;
  p.max_evidence_age_seconds = 300;
  return p;
}

}  // namespace wimse::attest
