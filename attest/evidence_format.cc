#include "attest/evidence_format.h"

#include <tss2/tss2_tpm2_types.h>

#include <nlohmann/json.hpp>
#include <set>

#include "jose/base64url.h"

namespace wimse::attest {

namespace {

using Json = nlohmann::json;

Error ParseError(const std::string& what) { return Error(Layer::kParse, what); }

// Parses JSON without exceptions and rejects duplicate member names at any depth (a parser
// differential otherwise: one reader takes the first member, another the last).
Result<Json> ParseStrictJson(std::string_view text, const char* what) {
  if (text.size() > kMaxEvidenceSize) {
    return ParseError(std::string(what) + " larger than " + std::to_string(kMaxEvidenceSize) +
                      " bytes");
  }
  std::vector<std::set<std::string>> keys;
  bool duplicate = false;
  std::string duplicate_name;
  Json::parser_callback_t cb = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) {
          keys.pop_back();
        }
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second) {
          duplicate = true;
          duplicate_name = parsed.get_ref<const std::string&>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  Json j = Json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return ParseError(std::string(what) + " is not valid JSON");
  }
  if (duplicate) {
    return ParseError(std::string(what) + " has a duplicate member \"" + duplicate_name + "\"");
  }
  return j;
}

Result<const Json*> Member(const Json& obj, const char* name, const std::string& path) {
  auto it = obj.find(name);
  if (it == obj.end()) {
    return ParseError(path + "." + name + " is missing");
  }
  return &*it;
}

Result<std::string> StringMember(const Json& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const Json* v, Member(obj, name, path));
  if (!v->is_string()) {
    return ParseError(path + "." + name + " is not a string");
  }
  return v->get<std::string>();
}

Result<Bytes> BytesMember(const Json& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, StringMember(obj, name, path));
  Result<Bytes> b = jose::Base64UrlDecode(text);
  if (!b.ok()) {
    return ParseError(path + "." + name + ": " + b.error().message());
  }
  return std::move(b).value();
}

Result<const Json*> ObjectMember(const Json& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const Json* v, Member(obj, name, path));
  if (!v->is_object()) {
    return ParseError(path + "." + name + " is not an object");
  }
  return v;
}

Result<const Json*> ArrayMember(const Json& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const Json* v, Member(obj, name, path));
  if (!v->is_array()) {
    return ParseError(path + "." + name + " is not an array");
  }
  return v;
}

Result<SignedAttest> DecodeSigned(const Json& obj, const std::string& path) {
  if (!obj.is_object()) {
    return ParseError(path + " is not an object");
  }
  SignedAttest s;
  WIMSE_ASSIGN_OR_RETURN(s.attest, BytesMember(obj, "attest", path));
  WIMSE_ASSIGN_OR_RETURN(s.signature, BytesMember(obj, "signature", path));
  return s;
}

// PCR indices are decimal strings "0".."23" with no sign, no leading zeros.
Result<uint32_t> PcrIndex(const std::string& s, const std::string& path) {
  if (s.empty() || s.size() > 2 || (s.size() == 2 && s[0] == '0')) {
    return ParseError(path + " has an invalid PCR index \"" + s + "\"");
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return ParseError(path + " has an invalid PCR index \"" + s + "\"");
    }
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v >= TPM2_MAX_PCRS) {
    return ParseError(path + " has PCR index " + s + " out of range");
  }
  return v;
}

Json Signed(const SignedAttest& s) {
  return Json{{"attest", jose::Base64UrlEncode(s.attest)}, {"signature", jose::Base64UrlEncode(s.signature)}};
}

}  // namespace

Result<uint16_t> BankAlgFromName(std::string_view name) {
  if (name == "sha1") {
    return uint16_t{TPM2_ALG_SHA1};
  }
  if (name == "sha256") {
    return uint16_t{TPM2_ALG_SHA256};
  }
  if (name == "sha384") {
    return uint16_t{TPM2_ALG_SHA384};
  }
  if (name == "sha512") {
    return uint16_t{TPM2_ALG_SHA512};
  }
  return ParseError("unknown PCR bank \"" + std::string(name) + "\"");
}

std::string BankNameFromAlg(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA1:
      return "sha1";
    case TPM2_ALG_SHA256:
      return "sha256";
    case TPM2_ALG_SHA384:
      return "sha384";
    case TPM2_ALG_SHA512:
      return "sha512";
    default:
      return "alg-" + std::to_string(alg);
  }
}

std::string EncodeEvidenceJson(const Tpm2Evidence& e) {
  Json quotes = Json::array();
  for (const QuoteEvidence& q : e.quotes) {
    Json values = Json::object();
    for (const auto& [index, value] : q.pcrs) {
      values[std::to_string(index)] = jose::Base64UrlEncode(value);
    }
    Json jq = Signed(q.quote);
    jq["pcrs"] = Json{{"bank", q.bank}, {"values", values}};
    quotes.push_back(jq);
  }
  Json keys = Json::array();
  for (const KeyEvidence& k : e.keys) {
    keys.push_back(Json{{"public", jose::Base64UrlEncode(k.public_blob)}, {"certify", Signed(k.certify)}});
  }
  Json doc{
      {"profile", e.profile},
      {"nonce", jose::Base64UrlEncode(e.nonce)},
      {"ak", Json{{"public", jose::Base64UrlEncode(e.ak_public)}}},
      {"quotes", quotes},
      {"keys", keys},
  };
  Json logs = Json::object();
  if (e.uefi_log) {
    logs["uefi"] = Json{{"format", e.uefi_log->format},
                        {"data", jose::Base64UrlEncode(e.uefi_log->data)}};
  }
  if (e.ima_log) {
    logs["ima"] = Json{{"format", e.ima_log->format},
                       {"data", jose::Base64UrlEncode(e.ima_log->data)}};
  }
  if (!logs.empty()) {
    doc["logs"] = logs;
  }
  if (!e.swname.empty() || !e.swversion.empty()) {
    doc["attester"] = Json{{"swname", e.swname}, {"swversion", e.swversion}};
  }
  return doc.dump();
}

Result<Tpm2Evidence> DecodeEvidenceJson(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(Json doc, ParseStrictJson(json, "evidence"));
  if (!doc.is_object()) {
    return ParseError("evidence is not a JSON object");
  }
  const std::string root = "evidence";
  Tpm2Evidence e;
  WIMSE_ASSIGN_OR_RETURN(e.profile, StringMember(doc, "profile", root));
  if (e.profile != kEvidenceProfile) {
    return ParseError("evidence.profile \"" + e.profile + "\" is not " + kEvidenceProfile);
  }
  WIMSE_ASSIGN_OR_RETURN(e.nonce, BytesMember(doc, "nonce", root));
  WIMSE_ASSIGN_OR_RETURN(const Json* ak, ObjectMember(doc, "ak", root));
  WIMSE_ASSIGN_OR_RETURN(e.ak_public, BytesMember(*ak, "public", root + ".ak"));

  WIMSE_ASSIGN_OR_RETURN(const Json* quotes, ArrayMember(doc, "quotes", root));
  for (size_t i = 0; i < quotes->size(); ++i) {
    const std::string path = root + ".quotes[" + std::to_string(i) + "]";
    const Json& jq = (*quotes)[i];
    QuoteEvidence q;
    WIMSE_ASSIGN_OR_RETURN(q.quote, DecodeSigned(jq, path));
    WIMSE_ASSIGN_OR_RETURN(const Json* pcrs, ObjectMember(jq, "pcrs", path));
    WIMSE_ASSIGN_OR_RETURN(q.bank, StringMember(*pcrs, "bank", path + ".pcrs"));
    WIMSE_ASSIGN_OR_RETURN(const Json* values, ObjectMember(*pcrs, "values", path + ".pcrs"));
    for (const auto& [key, value] : values->items()) {
      WIMSE_ASSIGN_OR_RETURN(uint32_t index, PcrIndex(key, path + ".pcrs.values"));
      if (!value.is_string()) {
        return ParseError(path + ".pcrs.values." + key + " is not a string");
      }
      Result<Bytes> v = jose::Base64UrlDecode(value.get<std::string>());
      if (!v.ok()) {
        return ParseError(path + ".pcrs.values." + key + ": " + v.error().message());
      }
      q.pcrs[index] = std::move(v).value();
    }
    e.quotes.push_back(std::move(q));
  }

  WIMSE_ASSIGN_OR_RETURN(const Json* keys, ArrayMember(doc, "keys", root));
  for (size_t i = 0; i < keys->size(); ++i) {
    const std::string path = root + ".keys[" + std::to_string(i) + "]";
    const Json& jk = (*keys)[i];
    if (!jk.is_object()) {
      return ParseError(path + " is not an object");
    }
    KeyEvidence k;
    WIMSE_ASSIGN_OR_RETURN(k.public_blob, BytesMember(jk, "public", path));
    WIMSE_ASSIGN_OR_RETURN(const Json* certify, ObjectMember(jk, "certify", path));
    WIMSE_ASSIGN_OR_RETURN(k.certify, DecodeSigned(*certify, path + ".certify"));
    e.keys.push_back(std::move(k));
  }

  auto logs = doc.find("logs");
  if (logs != doc.end()) {
    if (!logs->is_object()) {
      return ParseError("evidence.logs is not an object");
    }
    for (const char* name : {"uefi", "ima"}) {
      auto l = logs->find(name);
      if (l == logs->end()) {
        continue;
      }
      const std::string path = root + ".logs." + name;
      if (!l->is_object()) {
        return ParseError(path + " is not an object");
      }
      LogEvidence le;
      WIMSE_ASSIGN_OR_RETURN(le.format, StringMember(*l, "format", path));
      WIMSE_ASSIGN_OR_RETURN(le.data, BytesMember(*l, "data", path));
      (std::string(name) == "uefi" ? e.uefi_log : e.ima_log) = std::move(le);
    }
  }

  auto attester = doc.find("attester");
  if (attester != doc.end() && attester->is_object()) {
    auto n = attester->find("swname");
    if (n != attester->end() && n->is_string()) {
      e.swname = n->get<std::string>();
    }
    auto v = attester->find("swversion");
    if (v != attester->end() && v->is_string()) {
      e.swversion = v->get<std::string>();
    }
  }
  return e;
}

std::string WrapCmw(std::string_view evidence_json) {
  Json record =
      Json::array({kEvidenceMediaType, jose::Base64UrlEncode(AsBytes(evidence_json)), kCmwIndEvidence});
  return record.dump();
}

Result<std::string> UnwrapCmw(std::string_view cmw_json) {
  WIMSE_ASSIGN_OR_RETURN(Json record, ParseStrictJson(cmw_json, "CMW record"));
  if (!record.is_array() || record.size() < 2 || record.size() > 3) {
    return ParseError("CMW record is not a JSON array of 2 or 3 elements");
  }
  if (!record[0].is_string() || record[0].get<std::string>() != kEvidenceMediaType) {
    return ParseError(std::string("CMW type is not ") + kEvidenceMediaType);
  }
  if (!record[1].is_string()) {
    return ParseError("CMW value is not a string");
  }
  if (record.size() == 3) {
    // ind: uint bitmap; reference-values 1, endorsements 2, evidence 4, attestation-results 8,
    // appraisal-policy 16 (draft-ietf-rats-msg-wrap-23).
    if (!record[2].is_number_unsigned()) {
      return ParseError("CMW ind is not an unsigned integer");
    }
    uint64_t ind = record[2].get<uint64_t>();
    if ((ind & kCmwIndEvidence) == 0 || (ind & ~uint64_t{0x1F}) != 0) {
      return ParseError("CMW ind " + std::to_string(ind) + " does not mark evidence");
    }
  }
  Result<Bytes> value = jose::Base64UrlDecode(record[1].get<std::string>());
  if (!value.ok()) {
    return ParseError("CMW value: " + value.error().message());
  }
  return AsString(value.value());
}

}  // namespace wimse::attest
