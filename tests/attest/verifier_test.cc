// The evidence verifier on recorded swtpm evidence (tests/data/attest, see its README) and on
// attestations forged in software. No TPM needed.
#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attest/ear.h"
#include "attest/eventlog.h"
#include "attest/evidence_format.h"
#include "attest/verifier.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "jose/base64url.h"
#include "tests/attest/log_builder.h"
#include "util/file.h"

namespace wimse::attest {
namespace {

std::string DataPath(const std::string& name) {
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/tests/data/attest/" + name;
}

std::string ReadData(const std::string& name) {
  auto s = ReadFileString(DataPath(name));
  EXPECT_TRUE(s.ok()) << name;
  return s.ok() ? *s : std::string();
}

Bytes ReadDataBytes(const std::string& name) {
  auto b = ReadFileBytes(DataPath(name));
  EXPECT_TRUE(b.ok()) << name;
  return b.ok() ? *b : Bytes();
}

Tpm2Evidence LoadEvidence(const std::string& name) {
  auto inner = UnwrapCmw(ReadData(name));
  EXPECT_TRUE(inner.ok()) << inner.error().ToString();
  auto e = DecodeEvidenceJson(*inner);
  EXPECT_TRUE(e.ok()) << e.error().ToString();
  return *e;
}

Bytes Nonce() {
  std::string hex = ReadData("nonce.hex");
  hex.erase(std::remove(hex.begin(), hex.end(), '\n'), hex.end());
  return *HexDecode(hex);
}

Bytes AkSpki() {
  auto key = PublicKeyFromPem(ReadData("ak.pem"));
  EXPECT_TRUE(key.ok());
  return *PublicKeyToDer(key->get());
}

AppraisalOptions Options() {
  AppraisalOptions o;
  o.expected_nonce = Nonce();
  o.trusted_ak_spki = AkSpki();
  return o;
}

std::set<std::string> Codes(const AppraisalResult& r) {
  std::set<std::string> out;
  for (const Failure& f : r.failures) {
    out.insert(std::string(ReasonCode(f.reason)));
  }
  return out;
}

using CodeSet = std::set<std::string>;

// --- Recorded evidence -----------------------------------------------------------------------

TEST(RecordedEvidence, GenuineEvidenceIsAffirming) {
  AppraisalResult r = AppraiseCmw(ReadData("good.cmw.json"), Options());
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(r.Summary(), "affirming");
  // The SPKI handed out is the certified key's, not the AK's.
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  auto pub = UnmarshalTpm2bPublic(e.keys[0].public_blob);
  ASSERT_TRUE(pub.ok());
  auto key = PublicKeyFromTpmPublic(pub->publicArea);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(r.workload_key_spki, *PublicKeyToDer(key->get()));
  EXPECT_NE(r.workload_key_spki, AkSpki());
  EXPECT_EQ(r.workload_key_name, *TpmName(pub->publicArea));
  EXPECT_EQ(r.quoted_pcrs.size(), 8u);
  EXPECT_EQ(r.quote_clock.safe, TPM2_YES);
}

TEST(RecordedEvidence, WithoutTrustedAkFailsClosed) {
  // Field case C05 via hostile review: an AK's attributes are the attester's own claim.
  AppraisalOptions o = Options();
  o.trusted_ak_spki.reset();
  AppraisalResult r = AppraiseCmw(ReadData("good.cmw.json"), o);
  EXPECT_FALSE(r.affirming());
  EXPECT_EQ(Codes(r), CodeSet({"ak_not_trusted"}));
  EXPECT_TRUE(r.workload_key_spki.empty());
}

TEST(RecordedEvidence, ExplicitlyAllowedUnenrolledAkChecksAttributesOnly) {
  AppraisalOptions o = Options();
  o.trusted_ak_spki.reset();
  o.allow_unenrolled_ak = true;
  EXPECT_TRUE(AppraiseCmw(ReadData("good.cmw.json"), o).affirming());
}

TEST(RecordedEvidence, OtherAkIsNotTrusted) {
  AppraisalOptions o = Options();
  auto other = SoftwareSigner::Generate(KeyAlg::kEcP256);
  ASSERT_TRUE(other.ok());
  o.trusted_ak_spki = *PublicKeyToDer((*other)->public_key());
  AppraisalResult r = AppraiseCmw(ReadData("good.cmw.json"), o);
  EXPECT_EQ(Codes(r), CodeSet({"ak_not_trusted"}));
  EXPECT_TRUE(r.workload_key_spki.empty());
}

TEST(RecordedEvidence, NonceOneByteOff) {
  for (size_t i : {size_t{0}, size_t{31}}) {
    AppraisalOptions o = Options();
    o.expected_nonce[i] ^= 0x01;
    AppraisalResult r = AppraiseCmw(ReadData("good.cmw.json"), o);
    EXPECT_EQ(Codes(r), CodeSet({"quote_nonce_mismatch", "certify_nonce_mismatch"})) << i;
    EXPECT_EQ(r.Summary().rfind("contraindicated: quote_nonce_mismatch", 0), 0u) << r.Summary();
  }
}

TEST(RecordedEvidence, NoncePrefixOrExtendedIsRejected) {
  AppraisalOptions o = Options();
  o.expected_nonce.resize(16);
  EXPECT_EQ(Codes(AppraiseCmw(ReadData("good.cmw.json"), o)),
            CodeSet({"quote_nonce_mismatch", "certify_nonce_mismatch"}));
  o = Options();
  o.expected_nonce.push_back(0);
  EXPECT_EQ(Codes(AppraiseCmw(ReadData("good.cmw.json"), o)),
            CodeSet({"quote_nonce_mismatch", "certify_nonce_mismatch"}));
}

TEST(RecordedEvidence, ShortExpectedNonceIsRefusedByPolicy) {
  AppraisalOptions o = Options();
  o.expected_nonce.resize(8);
  AppraisalResult r = AppraiseCmw(ReadData("good.cmw.json"), o);
  EXPECT_TRUE(r.Has(Reason::kNoncePolicy));
  EXPECT_FALSE(r.affirming());
}

TEST(RecordedEvidence, OnePcrValueChanged) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  e.quotes[0].pcrs[4][0] ^= 0x01;
  AppraisalResult r = AppraiseEvidence(e, Options());
  EXPECT_EQ(Codes(r), CodeSet({"pcr_digest_mismatch"}));
  EXPECT_TRUE(r.quoted_pcrs.empty());
}

TEST(RecordedEvidence, PcrValuesMissingExtraOrWrongSize) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  e.quotes[0].pcrs.erase(7);
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"pcr_values_mismatch"}));
  e = LoadEvidence("good.cmw.json");
  e.quotes[0].pcrs[8] = Bytes(32, 0);
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"pcr_values_mismatch"}));
  e = LoadEvidence("good.cmw.json");
  e.quotes[0].pcrs[3].pop_back();
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"pcr_values_mismatch"}));
}

TEST(RecordedEvidence, QuoteSignedByNonRestrictedKey) {
  // Genuine TPMS_ATTEST bytes, signed with TPM2_Sign by a non-restricted TPM key: every
  // signature verifies, only the AK attribute check can catch it (field cases C02, C05).
  AppraisalOptions o = Options();
  o.trusted_ak_spki.reset();
  o.allow_unenrolled_ak = true;
  AppraisalResult r = AppraiseCmw(ReadData("unrestricted-signer.cmw.json"), o);
  EXPECT_EQ(Codes(r), CodeSet({"ak_attributes"}));
  EXPECT_NE(r.Summary().find("restricted not set"), std::string::npos) << r.Summary();
}

TEST(RecordedEvidence, WrongMagicInGenuineQuote) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  e.quotes[0].quote.attest[3] ^= 0x0F;  // 0xff544347 -> 0xff544348
  AppraisalResult r = AppraiseEvidence(e, Options());
  EXPECT_TRUE(r.Has(Reason::kQuoteNotTpmGenerated));
  EXPECT_TRUE(r.Has(Reason::kQuoteSignatureInvalid));
  EXPECT_FALSE(r.affirming());
}

TEST(RecordedEvidence, CertifyPresentedAsQuoteIsWrongType) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  e.quotes[0].quote = e.keys[0].certify;  // genuine, signed by the same AK, type 0x8017
  AppraisalResult r = AppraiseEvidence(e, Options());
  EXPECT_EQ(Codes(r), CodeSet({"quote_wrong_type"}));
  e = LoadEvidence("good.cmw.json");
  e.keys[0].certify = e.quotes[0].quote;
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"certify_wrong_type"}));
}

TEST(RecordedEvidence, PcrSelectionDiffers) {
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  {
    // Genuine quote over PCRs 0-6 with the matching values: digest fine, selection not.
    Tpm2Evidence e = good;
    e.quotes[0].quote = {ReadDataBytes("quote-sel0-6.msg"), ReadDataBytes("quote-sel0-6.sig")};
    e.quotes[0].pcrs.erase(7);
    EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"pcr_selection_mismatch"}));
  }
  {
    Tpm2Evidence e = good;
    e.quotes[0].quote = {ReadDataBytes("quote-sel0-7+16.msg"),
                         ReadDataBytes("quote-sel0-7+16.sig")};
    e.quotes[0].pcrs[16] = Bytes(32, 0);
    EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"pcr_selection_mismatch"}));
  }
  {
    // SHA-1 bank quote presented as the sha256 quote (bank downgrade, field case C03).
    Tpm2Evidence e = good;
    e.quotes[0].quote = {ReadDataBytes("quote-sha1.msg"), ReadDataBytes("quote-sha1.sig")};
    AppraisalResult r = AppraiseEvidence(e, Options());
    EXPECT_TRUE(r.Has(Reason::kPcrSelectionMismatch));
    EXPECT_FALSE(r.affirming());
  }
  {
    // The genuine quote appraised against a different requested selection.
    AppraisalOptions o = Options();
    o.expected_pcrs.mask = 0x7F;
    EXPECT_EQ(Codes(AppraiseEvidence(good, o)), CodeSet({"pcr_selection_mismatch"}));
    o.expected_pcrs = PcrBankSelection{TPM2_ALG_SHA384, 0xFF};
    EXPECT_EQ(Codes(AppraiseEvidence(good, o)), CodeSet({"quote_missing"}));
  }
}

TEST(RecordedEvidence, CertifyOfAnotherKey) {
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  Tpm2Evidence other = LoadEvidence("other-key.cmw.json");
  Tpm2Evidence e = good;
  e.keys[0].certify = other.keys[0].certify;  // certifies key 2, public area of key 1
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"certify_name_mismatch"}));
  e = good;
  e.keys[0].public_blob = other.keys[0].public_blob;  // key 2's public, key 1's certify
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"certify_name_mismatch"}));
  // Key 2's own evidence is fine on its own.
  EXPECT_TRUE(AppraiseEvidence(other, Options()).affirming());
}

TEST(RecordedEvidence, SignatureSwappedOrBroken) {
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  Tpm2Evidence e = good;
  std::swap(e.quotes[0].quote.signature, e.keys[0].certify.signature);
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())),
            CodeSet({"quote_signature_invalid", "certify_signature_invalid"}));
  e = good;
  e.quotes[0].quote.signature.back() ^= 0x01;
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"quote_signature_invalid"}));
  e = good;
  e.quotes[0].quote.signature.clear();
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"quote_signature_invalid"}));
}

TEST(RecordedEvidence, TrailingBytesAfterAttest) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  e.quotes[0].quote.attest.insert(e.quotes[0].quote.attest.end(), {0, 0, 0, 0});
  AppraisalResult r = AppraiseEvidence(e, Options());
  EXPECT_TRUE(r.Has(Reason::kQuoteMalformed));
  EXPECT_FALSE(r.affirming());
}

TEST(RecordedEvidence, EveryTruncationOfAttestOrSignatureIsRejected) {
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  for (size_t n = 0; n < good.quotes[0].quote.attest.size(); ++n) {
    Tpm2Evidence e = good;
    e.quotes[0].quote.attest.resize(n);
    EXPECT_TRUE(AppraiseEvidence(e, Options()).Has(Reason::kQuoteSignatureInvalid)) << n;
  }
  for (size_t n = 0; n < good.keys[0].certify.signature.size(); ++n) {
    Tpm2Evidence e = good;
    e.keys[0].certify.signature.resize(n);
    EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"certify_signature_invalid"})) << n;
  }
  for (size_t n = 0; n < good.ak_public.size(); ++n) {
    Tpm2Evidence e = good;
    e.ak_public.resize(n);
    EXPECT_TRUE(AppraiseEvidence(e, Options()).Has(Reason::kAkPublicMalformed)) << n;
  }
  for (size_t n = 0; n < good.keys[0].public_blob.size(); ++n) {
    Tpm2Evidence e = good;
    e.keys[0].public_blob.resize(n);
    EXPECT_TRUE(AppraiseEvidence(e, Options()).Has(Reason::kKeyPublicMalformed)) << n;
  }
}

// Public points the verifier must refuse (it builds the AK's key from a per-curve template and
// only decodes the workload key's point on a shared group: both must still check the point).
TEST(RecordedEvidence, OffCurveOrUnreducedPointsAreRefused) {
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  auto with_point = [](Bytes blob, uint8_t fill_x, bool flip_y) {
    auto pub = UnmarshalTpm2bPublic(blob);
    EXPECT_TRUE(pub.ok());
    TPMS_ECC_POINT& p = pub->publicArea.unique.ecc;
    if (flip_y) {
      p.y.buffer[p.y.size - 1] ^= 1;  // (x, y') is not on the curve
    } else {
      std::fill(p.x.buffer, p.x.buffer + p.x.size, fill_x);  // x >= p: not a field element
    }
    return *MarshalTpm2bPublic(*pub);
  };
  for (bool flip_y : {true, false}) {
    Tpm2Evidence key = good;
    key.keys[0].public_blob = with_point(key.keys[0].public_blob, 0xFF, flip_y);
    AppraisalResult r = AppraiseEvidence(key, Options());
    EXPECT_TRUE(r.Has(Reason::kKeyPublicMalformed)) << r.Summary();
    EXPECT_FALSE(r.affirming());
    Tpm2Evidence ak = good;
    ak.ak_public = with_point(ak.ak_public, 0xFF, flip_y);
    r = AppraiseEvidence(ak, Options());
    EXPECT_TRUE(r.Has(Reason::kAkPublicMalformed)) << r.Summary();
  }
}

TEST(RecordedEvidence, KeyCountMustBeOne) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  Tpm2Evidence two = e;
  two.keys.push_back(e.keys[0]);
  EXPECT_EQ(Codes(AppraiseEvidence(two, Options())), CodeSet({"key_missing"}));
  e.keys.clear();
  EXPECT_EQ(Codes(AppraiseEvidence(e, Options())), CodeSet({"key_missing"}));
}

// --- Malformed containers --------------------------------------------------------------------

TEST(MalformedEvidence, EveryTruncationOfTheRecordIsRejected) {
  std::string good = ReadData("good.cmw.json");
  for (size_t n = 0; n + 1 < good.size(); ++n) {
    AppraisalResult r = AppraiseCmw(good.substr(0, n), Options());
    EXPECT_FALSE(r.affirming()) << n;
    EXPECT_EQ(Codes(r), CodeSet({"cmw_malformed"})) << n;
  }
}

TEST(MalformedEvidence, ContainerDefects) {
  std::string inner = *UnwrapCmw(ReadData("good.cmw.json"));
  std::string b64 = jose::Base64UrlEncode(AsBytes(inner));
  const char* type = kEvidenceMediaType;
  struct Case {
    std::string record;
    const char* code;
  } cases[] = {
      {"", "cmw_malformed"},
      {"garbage", "cmw_malformed"},
      {"{}", "cmw_malformed"},
      {"[]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\"]", "cmw_malformed"},
      {"[\"application/json\",\"" + b64 + "\",4]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" + b64 + "\",8]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" + b64 + "\",-4]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" + b64 + "\",4,1]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" + b64 + "=\",4]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" + b64 + "!\",4]", "cmw_malformed"},
      {"[\"" + std::string(type) + "\",\"" +
           jose::Base64UrlEncode(AsBytes(inner.substr(0, inner.size() / 2))) + "\",4]",
       "evidence_malformed"},
      {"[\"" + std::string(type) + "\",\"" + jose::Base64UrlEncode(AsBytes("not json")) + "\",4]",
       "evidence_malformed"},
      {"[\"" + std::string(type) + "\",\"" + jose::Base64UrlEncode(AsBytes("[1,2]")) + "\",4]",
       "evidence_malformed"},
      {"[\"" + std::string(type) + "\",\"" + jose::Base64UrlEncode(AsBytes("{\"profile\":1}")) +
           "\",4]",
       "evidence_malformed"},
      {WrapCmw(inner), nullptr},
      {"[\"" + std::string(type) + "\",\"" + b64 + "\"]", nullptr},
  };
  for (const Case& c : cases) {
    AppraisalResult r = AppraiseCmw(c.record, Options());
    if (c.code == nullptr) {
      EXPECT_TRUE(r.affirming()) << c.record.substr(0, 80) << " " << r.Summary();
    } else {
      EXPECT_EQ(Codes(r), CodeSet({c.code})) << c.record.substr(0, 80) << " " << r.Summary();
    }
  }
}

TEST(MalformedEvidence, DocumentDefects) {
  std::string inner = *UnwrapCmw(ReadData("good.cmw.json"));
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = inner;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) {
      s.replace(at, from.size(), to);
    }
    return s;
  };
  std::vector<std::string> bad = {
      replace("\"profile\":", "\"profile\":\"x\",\"profile\":"),  // duplicate member
      replace("\"profile\":\"", "\"profile\":\"x"),               // unknown profile
      replace("\"quotes\":", "\"quotez\":"),                      // missing member
      replace("\"values\":{\"0\":", "\"values\":{\"00\":"),       // non-canonical index
      replace("\"values\":{\"0\":", "\"values\":{\"32\":"),       // index out of range
      replace("\"values\":{\"0\":\"", "\"values\":{\"0\":\"+"),   // not base64url
      replace("\"keys\":[", "\"keys\":[1,"),                      // wrong element type
      replace("\"ak\":{", "\"ak\":{\"public\":null,"),            // duplicate, wrong type
  };
  for (const std::string& doc : bad) {
    AppraisalResult r = AppraiseEvidenceJson(doc, Options());
    EXPECT_EQ(Codes(r), CodeSet({"evidence_malformed"})) << r.Summary();
  }
  // Unknown members are ignored.
  EXPECT_TRUE(
      AppraiseEvidenceJson(replace("\"profile\":", "\"future\":[1],\"profile\":"), Options())
          .affirming());
}

// The evidence JSON reader refuses deep nesting while parsing (before building anything): a
// 2 MiB "[[[[..." used to be built in full and only then rejected.
TEST(MalformedEvidence, NestingDepthIsCapped) {
  auto nested = [](int depth, char open, char close, const std::string& inner) {
    std::string s;
    for (int i = 0; i < depth; ++i) {
      s += open;
      if (open == '{') {
        s += "\"a\":";
      }
    }
    s += inner;
    for (int i = 0; i < depth; ++i) {
      s += close;
    }
    return s;
  };
  // At the cap: valid JSON (then not evidence); one deeper: refused as JSON.
  for (char open : {'[', '{'}) {
    char close = open == '[' ? ']' : '}';
    auto at = DecodeEvidenceJson(nested(kMaxEvidenceJsonDepth, open, close, "1"));
    ASSERT_FALSE(at.ok());
    EXPECT_EQ(at.error().message().find("not valid JSON"), std::string::npos)
        << at.error().message();
    auto over = DecodeEvidenceJson(nested(kMaxEvidenceJsonDepth + 1, open, close, "1"));
    ASSERT_FALSE(over.ok());
    EXPECT_NE(over.error().message().find("nesting deeper than 32"), std::string::npos)
        << over.error().message();
  }
  // The hostile case of the issue: 700,000 nested arrays (1.4 MB, under the size cap).
  std::string deep(700000, '[');
  deep += std::string(700000, ']');
  ASSERT_LT(deep.size(), kMaxEvidenceSize);
  auto r = AppraiseEvidenceJson(deep, Options());
  EXPECT_EQ(Codes(r), CodeSet({"evidence_malformed"}));
  EXPECT_NE(r.Summary().find("nesting deeper than 32"), std::string::npos) << r.Summary();
  // Inside a CMW record as well.
  AppraisalResult c = AppraiseCmw(WrapCmw(deep), Options());
  EXPECT_EQ(Codes(c), CodeSet({"evidence_malformed"}));
  EXPECT_EQ(Codes(AppraiseCmw(deep, Options())), CodeSet({"cmw_malformed"}));
}

// The strict reader accepts exactly the JSON texts nlohmann::json (RFC 8259) accepts, on a
// corpus of edge cases (a differential: the verifier and any other reader agree on what is
// JSON). Deliberate differences are listed separately.
TEST(MalformedEvidence, JsonReaderAgreesWithNlohmann) {
  const std::vector<std::string> corpus = {
      "",
      " ",
      "{}",
      "[]",
      "[",
      "]",
      "{",
      "}",
      "[1,]",
      "[,1]",
      "{\"a\":1,}",
      "{,}",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\" 1}",
      "{1:2}",
      "{\"a\":1 \"b\":2}",
      "[1 2]",
      "null",
      "nul",
      "nulll",
      "true",
      "tru",
      "false",
      "falsey",
      "0",
      "-0",
      "01",
      "-01",
      "1.",
      ".1",
      "1.5",
      "1e5",
      "1E+5",
      "1e-5",
      "1e",
      "1e+",
      "-",
      "+1",
      "0x10",
      "1.5e3",
      "123456789012345678901234567890",
      "18446744073709551615",
      "18446744073709551616",
      "-9223372036854775809",
      "1e308",
      "1e309",
      "\"\"",
      "\"a\"",
      "\"\\\"\"",
      "\"\\/\"",
      "\"\\b\\f\\n\\r\\t\"",
      "\"\\u0041\"",
      "\"\\u00e9\"",
      "\"\\uD83D\\uDE00\"",
      "\"\\uD83D\"",
      "\"\\uDE00\"",
      "\"\\uD83Dx\"",
      "\"\\u12\"",
      "\"\\u12G4\"",
      "\"\\x\"",
      "\"\\\"",
      "\"abc",
      "\"a\tb\"",
      std::string("\"a\x01b\""),
      "\"\x7f\"",
      "\"\xc3\xa9\"",
      "\"\xc3\"",
      "\"\xc0\x80\"",
      "\"\xed\xa0\x80\"",
      "\"\xe2\x82\xac\"",
      "\"\xf0\x9f\x98\x80\"",
      "\"\xf4\x90\x80\x80\"",
      "\"\xff\"",
      "\"\xe2\x82\"",
      " [ 1 , { \"a\" : [ ] } ] ",
      "\t\r\n[]\n",
      "[]x",
      "[] []",
      "[1]\x00",
      "/* c */ []",
      "[NaN]",
      "[Infinity]",
      "['a']",
      "[\"a\"\"b\"]",
      "{\"a\":{\"b\":{\"c\":[true,false,null]}}}",
      "{\"\":1}",
      "[-]",
      "[--1]",
      "[1.e1]",
  };
  for (const std::string& text : corpus) {
    bool theirs = !nlohmann::json::parse(text, nullptr, false).is_discarded();
    Result<Tpm2Evidence> r = DecodeEvidenceJson(text);
    bool ours = r.ok() || r.error().message().find("not valid JSON") == std::string::npos;
    EXPECT_EQ(ours, theirs) << "\"" << text << "\" " << (r.ok() ? "" : r.error().message());
  }
  // Deliberately stricter: a byte-order mark (RFC 8259 §8.1: senders MUST NOT add one) and
  // duplicate member names (parser differential).
  EXPECT_FALSE(nlohmann::json::parse("\xef\xbb\xbf[]", nullptr, false).is_discarded());
  EXPECT_NE(DecodeEvidenceJson("\xef\xbb\xbf[]").error().message().find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(DecodeEvidenceJson("{\"a\":1,\"a\":1}").error().message().find("duplicate member"),
            std::string::npos);
  // Duplicates in a large object (sorted check) and after unescaping.
  std::string big = "{";
  for (int i = 0; i < 100; ++i) {
    big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  }
  EXPECT_NE(DecodeEvidenceJson(big + "\"k42\":0}").error().message().find("duplicate member"),
            std::string::npos);
  EXPECT_EQ(DecodeEvidenceJson(big + "\"k100\":0}").error().message().find("duplicate member"),
            std::string::npos);
  EXPECT_NE(
      DecodeEvidenceJson("{\"ab\":1,\"\\u0061b\":2}").error().message().find("duplicate member"),
      std::string::npos);
}

// An escaped member name means the same member: the evidence decodes the same.
TEST(MalformedEvidence, EscapedNamesAndValuesDecodeAlike) {
  std::string inner = *UnwrapCmw(ReadData("good.cmw.json"));
  std::string escaped = inner;
  size_t at = escaped.find("\"profile\":");
  ASSERT_NE(at, std::string::npos);
  escaped.replace(at, 10, "\"\\u0070rofile\":");
  EXPECT_TRUE(AppraiseEvidenceJson(escaped, Options()).affirming());
}

TEST(B64Url, StrictDecoding) {
  EXPECT_EQ(jose::Base64UrlEncode(AsBytes("")), "");
  EXPECT_EQ(jose::Base64UrlEncode(Bytes{0xfb, 0xff}), "-_8");
  EXPECT_EQ(*jose::Base64UrlDecode("-_8"), (Bytes{0xfb, 0xff}));
  EXPECT_FALSE(jose::Base64UrlDecode("-_9").ok());   // unused bits set
  EXPECT_FALSE(jose::Base64UrlDecode("-_8=").ok());  // padding
  EXPECT_FALSE(jose::Base64UrlDecode("+/8").ok());   // standard alphabet
  EXPECT_FALSE(jose::Base64UrlDecode("A").ok());     // impossible length
  EXPECT_FALSE(jose::Base64UrlDecode("AA A").ok());  // whitespace
}

// --- Attestations forged in software -------------------------------------------------------
//
// A software P-256/P-384 key stands in for "a key that signs whatever it is given"; the
// verifier is told to trust it (its public area claims the AK attributes), so each test
// isolates exactly one check (field case C02: "let the verifier trust the unrestricted key").

class SoftwareAttester {
 public:
  explicit SoftwareAttester(KeyAlg alg = KeyAlg::kEcP256, HashAlg hash = HashAlg::kSha256)
      : hash_(hash) {
    signer_ = std::move(SoftwareSigner::Generate(alg).value());
    TPM2B_PUBLIC pub{};
    pub.publicArea.type = TPM2_ALG_ECC;
    pub.publicArea.nameAlg = TPM2_ALG_SHA256;
    pub.publicArea.objectAttributes = 0x00050072;
    auto& ecc = pub.publicArea.parameters.eccDetail;
    ecc.symmetric.algorithm = TPM2_ALG_NULL;
    ecc.scheme.scheme = TPM2_ALG_ECDSA;
    ecc.scheme.details.ecdsa.hashAlg = TpmAlgFromHash(hash);
    ecc.curveID = alg == KeyAlg::kEcP256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384;
    ecc.kdf.scheme = TPM2_ALG_NULL;
    Bytes point = *EcPublicPoint(signer_->public_key());  // 04 || X || Y
    size_t field = (point.size() - 1) / 2;
    pub.publicArea.unique.ecc.x.size = static_cast<uint16_t>(field);
    std::copy(point.begin() + 1, point.begin() + 1 + field, pub.publicArea.unique.ecc.x.buffer);
    pub.publicArea.unique.ecc.y.size = static_cast<uint16_t>(field);
    std::copy(point.begin() + 1 + field, point.end(), pub.publicArea.unique.ecc.y.buffer);
    public_blob_ = *MarshalTpm2bPublic(pub);
  }

  const Bytes& public_blob() const { return public_blob_; }
  Bytes spki() const { return *PublicKeyToDer(signer_->public_key()); }

  // Marshals `attest` and signs it.
  SignedAttest Sign(const TPMS_ATTEST& attest) {
    Bytes buf(sizeof(TPMS_ATTEST));
    size_t off = 0;
    EXPECT_EQ(Tss2_MU_TPMS_ATTEST_Marshal(&attest, buf.data(), buf.size(), &off), 0u);
    buf.resize(off);
    return SignBytes(buf);
  }

  SignedAttest SignBytes(const Bytes& attest) {
    Bytes digest = *Digest(hash_, attest);
    Bytes raw = *signer_->SignDigest(hash_, digest);
    TPMT_SIGNATURE sig{};
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.hash = TpmAlgFromHash(hash_);
    size_t half = raw.size() / 2;
    sig.signature.ecdsa.signatureR.size = static_cast<uint16_t>(half);
    std::copy(raw.begin(), raw.begin() + half, sig.signature.ecdsa.signatureR.buffer);
    sig.signature.ecdsa.signatureS.size = static_cast<uint16_t>(half);
    std::copy(raw.begin() + half, raw.end(), sig.signature.ecdsa.signatureS.buffer);
    return SignedAttest{attest, MarshalSig(sig)};
  }

  static Bytes MarshalSig(const TPMT_SIGNATURE& sig) {
    Bytes out(sizeof(TPMT_SIGNATURE));
    size_t off = 0;
    EXPECT_EQ(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.data(), out.size(), &off), 0u);
    out.resize(off);
    return out;
  }

 private:
  HashAlg hash_;
  std::unique_ptr<SoftwareSigner> signer_;
  Bytes public_blob_;
};

// A quote-shaped TPMS_ATTEST over sha256 PCRs 0-7 with values `pcrs`, digest hashed with `hash`.
TPMS_ATTEST QuoteAttest(const Bytes& nonce, const std::map<uint32_t, Bytes>& pcrs, HashAlg hash) {
  TPMS_ATTEST a{};
  a.magic = TPM2_GENERATED_VALUE;
  a.type = TPM2_ST_ATTEST_QUOTE;
  a.qualifiedSigner.size = 4;  // any signer QN; the same for the certify below
  a.extraData.size = static_cast<uint16_t>(nonce.size());
  std::copy(nonce.begin(), nonce.end(), a.extraData.buffer);
  a.clockInfo.clock = 1000;
  a.clockInfo.safe = TPM2_YES;
  auto& sel = a.attested.quote.pcrSelect;
  sel.count = 1;
  sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
  sel.pcrSelections[0].sizeofSelect = 3;
  sel.pcrSelections[0].pcrSelect[0] = 0xFF;
  Bytes concat;
  for (const auto& [i, v] : pcrs) {
    concat.insert(concat.end(), v.begin(), v.end());
  }
  Bytes digest = *Digest(hash, concat);
  a.attested.quote.pcrDigest.size = static_cast<uint16_t>(digest.size());
  std::copy(digest.begin(), digest.end(), a.attested.quote.pcrDigest.buffer);
  return a;
}

TPMS_ATTEST CertifyAttest(const Bytes& nonce, const Bytes& key_public_blob) {
  TPMS_ATTEST a{};
  a.magic = TPM2_GENERATED_VALUE;
  a.type = TPM2_ST_ATTEST_CERTIFY;
  a.qualifiedSigner.size = 4;
  a.extraData.size = static_cast<uint16_t>(nonce.size());
  std::copy(nonce.begin(), nonce.end(), a.extraData.buffer);
  a.clockInfo.clock = 1001;
  a.clockInfo.safe = TPM2_YES;
  auto pub = UnmarshalTpm2bPublic(key_public_blob);
  Bytes name = *TpmName(pub->publicArea);
  a.attested.certify.name.size = static_cast<uint16_t>(name.size());
  std::copy(name.begin(), name.end(), a.attested.certify.name.name);
  a.attested.certify.qualifiedName = a.attested.certify.name;  // non-empty
  return a;
}

struct Forged {
  Tpm2Evidence evidence;
  AppraisalOptions options;
};

// Forges complete evidence around the recorded workload key and PCR values.
Forged Forge(SoftwareAttester& sw, HashAlg digest_hash = HashAlg::kSha256,
             const std::function<void(TPMS_ATTEST&, TPMS_ATTEST&)>& tweak = nullptr,
             const Bytes* key_blob = nullptr) {
  Forged f;
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  f.options = Options();
  f.options.trusted_ak_spki = sw.spki();
  f.evidence = good;
  f.evidence.ak_public = sw.public_blob();
  if (key_blob != nullptr) {
    f.evidence.keys[0].public_blob = *key_blob;
  }
  TPMS_ATTEST q = QuoteAttest(f.options.expected_nonce, good.quotes[0].pcrs, digest_hash);
  TPMS_ATTEST c = CertifyAttest(f.options.expected_nonce, f.evidence.keys[0].public_blob);
  if (tweak) {
    tweak(q, c);
  }
  f.evidence.quotes[0].quote = sw.Sign(q);
  f.evidence.keys[0].certify = sw.Sign(c);
  return f;
}

TEST(ForgedEvidence, HarnessProducesAffirmingEvidence) {
  SoftwareAttester sw;
  Forged f = Forge(sw);
  AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
  EXPECT_TRUE(r.affirming()) << r.Summary();
}

TEST(ForgedEvidence, WrongMagicWithValidSignature) {
  for (uint32_t magic : {0x00000000u, 0xFF544348u}) {
    SoftwareAttester sw;
    Forged f = Forge(sw, HashAlg::kSha256, [&](TPMS_ATTEST& q, TPMS_ATTEST& c) {
      q.magic = magic;
      c.magic = magic;
    });
    EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)),
              CodeSet({"quote_not_tpm_generated", "certify_not_tpm_generated"}))
        << magic;
  }
}

TEST(ForgedEvidence, EmptySelectionAndDuplicateBank) {
  SoftwareAttester sw;
  Forged f = Forge(sw, HashAlg::kSha256, [](TPMS_ATTEST& q, TPMS_ATTEST&) {
    q.attested.quote.pcrSelect.count = 0;  // digest = H("") over nothing
  });
  EXPECT_TRUE(AppraiseEvidence(f.evidence, f.options).Has(Reason::kPcrSelectionMismatch));
  f = Forge(sw, HashAlg::kSha256, [](TPMS_ATTEST& q, TPMS_ATTEST&) {
    auto& sel = q.attested.quote.pcrSelect;
    sel.count = 2;
    sel.pcrSelections[1] = sel.pcrSelections[0];
  });
  EXPECT_TRUE(AppraiseEvidence(f.evidence, f.options).Has(Reason::kPcrSelectionMismatch));
}

TEST(ForgedEvidence, PcrDigestUsesTheSignatureHash) {
  // rats-tpm §6 #2: a SHA-384 AK quoting the SHA-256 bank hashes the values with SHA-384.
  SoftwareAttester sw(KeyAlg::kEcP384, HashAlg::kSha384);
  Forged f = Forge(sw, HashAlg::kSha384);
  EXPECT_TRUE(AppraiseEvidence(f.evidence, f.options).affirming());
  Forged wrong = Forge(sw, HashAlg::kSha256);
  EXPECT_EQ(Codes(AppraiseEvidence(wrong.evidence, wrong.options)),
            CodeSet({"pcr_digest_mismatch"}));
}

TEST(ForgedEvidence, SignatureSchemeMustBeTheAkScheme) {
  SoftwareAttester sw(KeyAlg::kEcP256, HashAlg::kSha256);
  Forged f = Forge(sw);
  auto sig = [](Bytes b) {
    TPMT_SIGNATURE s{};
    size_t off = 0;
    EXPECT_EQ(Tss2_MU_TPMT_SIGNATURE_Unmarshal(b.data(), b.size(), &off, &s), 0u);
    return s;
  };
  TPMT_SIGNATURE s = sig(f.evidence.quotes[0].quote.signature);
  s.signature.ecdsa.hash = TPM2_ALG_SHA384;
  f.evidence.quotes[0].quote.signature = SoftwareAttester::MarshalSig(s);
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)), CodeSet({"quote_signature_invalid"}));
}

TEST(ForgedEvidence, ZeroAndOutOfRangeEcdsaValues) {
  // Field case C18: r = s = 0, r = 0, s = n, and zero-length r/s never verify.
  static const char kOrder[] = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
  SoftwareAttester sw;
  Forged f = Forge(sw);
  Bytes n = *HexDecode(kOrder);
  struct {
    Bytes r, s;
  } cases[] = {{Bytes(32, 0), Bytes(32, 0)}, {Bytes(32, 0), n},    {n, n},
               {Bytes{}, Bytes{}},           {Bytes{0}, Bytes{0}}, {Bytes(33, 1), Bytes(32, 1)}};
  for (const auto& c : cases) {
    TPMT_SIGNATURE s{};
    s.sigAlg = TPM2_ALG_ECDSA;
    s.signature.ecdsa.hash = TPM2_ALG_SHA256;
    s.signature.ecdsa.signatureR.size = static_cast<uint16_t>(c.r.size());
    std::copy(c.r.begin(), c.r.end(), s.signature.ecdsa.signatureR.buffer);
    s.signature.ecdsa.signatureS.size = static_cast<uint16_t>(c.s.size());
    std::copy(c.s.begin(), c.s.end(), s.signature.ecdsa.signatureS.buffer);
    Forged g = f;
    g.evidence.quotes[0].quote.signature = SoftwareAttester::MarshalSig(s);
    EXPECT_EQ(Codes(AppraiseEvidence(g.evidence, g.options)), CodeSet({"quote_signature_invalid"}));
  }
}

TEST(ForgedEvidence, AkAttributeVariants) {
  // C05: each AK attribute the verifier requires, cleared in turn, and decrypt set.
  struct {
    uint32_t attrs;
    const char* detail;
  } cases[] = {
      {0x00040072, "restricted not set"},  {0x00050070, "fixedTPM not set"},
      {0x00050062, "fixedParent not set"}, {0x00050052, "sensitiveDataOrigin not set"},
      {0x00070072, "decrypt set"},
  };
  for (const auto& c : cases) {
    SoftwareAttester sw;
    Forged f = Forge(sw);
    auto pub = UnmarshalTpm2bPublic(f.evidence.ak_public);
    pub->publicArea.objectAttributes = c.attrs;
    f.evidence.ak_public = *MarshalTpm2bPublic(*pub);
    AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
    EXPECT_EQ(Codes(r), CodeSet({"ak_attributes"})) << c.detail;
    EXPECT_NE(r.Summary().find(c.detail), std::string::npos) << r.Summary();
  }
}

TEST(ForgedEvidence, WorkloadKeyAttributeVariants) {
  // C06 #3: certified keys that could leave the TPM or have the wrong role.
  struct {
    uint32_t attrs;
    const char* detail;
  } cases[] = {
      {0x00040070, "fixedTPM not set"},
      {0x00040062, "fixedParent not set"},
      {0x00040052, "sensitiveDataOrigin not set"},
      {0x00060072, "decrypt set"},
      {0x00050072, "restricted set"},
      {0x00000072, "sign not set"},
  };
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  for (const auto& c : cases) {
    auto pub = UnmarshalTpm2bPublic(good.keys[0].public_blob);
    pub->publicArea.objectAttributes = c.attrs;
    Bytes blob = *MarshalTpm2bPublic(*pub);
    SoftwareAttester sw;
    Forged f = Forge(sw, HashAlg::kSha256, nullptr, &blob);
    AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
    EXPECT_EQ(Codes(r), CodeSet({"key_attributes"})) << c.detail;
    EXPECT_NE(r.Summary().find(c.detail), std::string::npos) << r.Summary();
  }
}

TEST(ForgedEvidence, CertifyChecks) {
  SoftwareAttester sw;
  Forged f = Forge(sw, HashAlg::kSha256,
                   [](TPMS_ATTEST&, TPMS_ATTEST& c) { c.attested.certify.qualifiedName.size = 0; });
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)),
            CodeSet({"certify_qualified_name_missing"}));
  f = Forge(sw, HashAlg::kSha256,
            [](TPMS_ATTEST&, TPMS_ATTEST& c) { c.qualifiedSigner.name[0] = 1; });
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)), CodeSet({"certify_signer_mismatch"}));
  f = Forge(sw, HashAlg::kSha256, [](TPMS_ATTEST&, TPMS_ATTEST& c) { c.clockInfo.resetCount = 1; });
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)), CodeSet({"boot_mismatch"}));
  f = Forge(sw, HashAlg::kSha256, [](TPMS_ATTEST& q, TPMS_ATTEST&) { q.clockInfo.safe = TPM2_NO; });
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)), CodeSet({"clock_not_safe"}));
  // C06 #2: the presented public area with nameAlg SHA-1 no longer has the certified Name.
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  auto pub = UnmarshalTpm2bPublic(good.keys[0].public_blob);
  Forged g = Forge(sw);
  pub->publicArea.nameAlg = TPM2_ALG_SHA1;
  g.evidence.keys[0].public_blob = *MarshalTpm2bPublic(*pub);
  AppraisalResult r = AppraiseEvidence(g.evidence, g.options);
  EXPECT_FALSE(r.affirming());
  EXPECT_TRUE(r.Has(Reason::kKeyPublicMalformed) || r.Has(Reason::kCertifyNameMismatch))
      << r.Summary();
}

TEST(ForgedEvidence, EveryFailureIsReported) {
  // Checks do not stop at the first failure.
  SoftwareAttester sw;
  Forged f = Forge(sw, HashAlg::kSha256, [](TPMS_ATTEST& q, TPMS_ATTEST& c) {
    q.extraData.buffer[0] ^= 1;
    q.clockInfo.safe = TPM2_NO;
    c.attested.certify.qualifiedName.size = 0;
  });
  f.evidence.quotes[0].pcrs[2][5] ^= 1;
  EXPECT_EQ(Codes(AppraiseEvidence(f.evidence, f.options)),
            CodeSet({"quote_nonce_mismatch", "clock_not_safe", "pcr_digest_mismatch",
                     "certify_qualified_name_missing"}));
}

TEST(EvidenceFormat, RoundTripIsExact) {
  Tpm2Evidence e = LoadEvidence("good.cmw.json");
  std::string json = EncodeEvidenceJson(e);
  EXPECT_EQ(json, *UnwrapCmw(ReadData("good.cmw.json")));
  auto back = DecodeEvidenceJson(json);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->quotes[0].quote.attest, e.quotes[0].quote.attest);
  // The CMW record: media type, base64url value, ind = 4 (evidence).
  std::string record = ReadData("good.cmw.json");
  EXPECT_EQ(record.rfind("[\"application/vnd.wimse-tpm.tpm2-evidence+json\",\"", 0), 0u);
  EXPECT_NE(record.find("\",4]"), std::string::npos);
}

TEST(ForgedEvidence, EvidenceAgeIsBoundedByThePolicy) {
  SoftwareAttester sw;
  Forged f = Forge(sw);
  AttestationPolicy policy;
  policy.pcrs = f.options.expected_pcrs;
  policy.max_evidence_age_seconds = 60;
  f.options.policy = &policy;
  f.options.now_unix = 1'800'000'000;
  f.options.nonce_issued_unix = f.options.now_unix - 30;
  EXPECT_TRUE(AppraiseEvidence(f.evidence, f.options).affirming());
  struct Case {
    int64_t issued;
    const char* says;
  };
  for (Case c : {Case{0, "issue time was not given"}, Case{f.options.now_unix - 61, "61 s ago"},
                 Case{f.options.now_unix + 5, "5 s in the future"}}) {
    f.options.nonce_issued_unix = c.issued;
    AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
    EXPECT_EQ(Codes(r), CodeSet({"evidence_too_old"})) << c.issued;
    EXPECT_NE(r.Summary().find(c.says), std::string::npos) << r.Summary();
  }
}

// --- IMA logs: appraised only where they replay; approval needs an allow list ----------------

// Evidence whose quote covers sha256 PCRs 0-7 (the recorded values) and PCR 10 as the IMA
// entries of `ima` extend it (entries for other PCRs are left out of the replay, as a TPM would
// have them in another PCR).
Forged ForgeWithIma(SoftwareAttester& sw, const std::vector<testing::ImaEntry>& ima) {
  Forged f;
  Tpm2Evidence good = LoadEvidence("good.cmw.json");
  f.options = Options();
  f.options.trusted_ak_spki = sw.spki();
  f.options.expected_pcrs.mask = 0xFF | (1u << 10);
  std::map<uint32_t, Bytes> pcrs = good.quotes[0].pcrs;
  Bytes p10 = InitialPcrValue(10, TPM2_ALG_SHA256);
  for (const testing::ImaEntry& e : ima) {
    if (e.pcr == 10) {
      p10 = *ExtendPcr(TPM2_ALG_SHA256, p10, testing::ImaSha256Extend(e));
    }
  }
  pcrs[10] = p10;
  TPMS_ATTEST q = QuoteAttest(f.options.expected_nonce, pcrs, HashAlg::kSha256);
  q.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[1] = 0x04;  // PCR 10
  f.evidence = good;
  f.evidence.ak_public = sw.public_blob();
  f.evidence.quotes[0].quote = sw.Sign(q);
  f.evidence.quotes[0].pcrs = pcrs;
  f.evidence.keys[0].certify =
      sw.Sign(CertifyAttest(f.options.expected_nonce, f.evidence.keys[0].public_blob));
  std::string ascii = testing::ImaAscii(ima);
  f.evidence.ima_log = LogEvidence{"ima-ascii", Bytes(ascii.begin(), ascii.end())};
  return f;
}

int Executables(const AppraisalResult& r, const Bytes& nonce) {
  return BuildEarClaims(r, nonce,
                        EarOptions{})["submods"]["tpm"]["ear_trustworthiness_vector"]["executables"]
      .get<int>();
}

TEST(ImaAppraisal, EntryForAnotherPcrIsRefusedNotAppraised) {
  // Hostile review: an entry for PCR 11 was neither replayed nor bound to the quote, yet its
  // digest was appraised and captured into `policy capture`'s allow list.
  SoftwareAttester sw;
  testing::ImaEntry evil = testing::MakeImaEntry("/usr/bin/evil", "never extended");
  evil.pcr = 11;
  Forged f = ForgeWithIma(sw, {testing::MakeImaEntry("/usr/bin/good", "good"), evil});
  AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
  EXPECT_EQ(Codes(r), CodeSet({"event_log_malformed"})) << r.Summary();
  EXPECT_NE(r.Summary().find("extends PCR 11"), std::string::npos) << r.Summary();
  EXPECT_EQ(r.event_digests.count(evil.file_sha256), 0u);
  EXPECT_FALSE(r.ima_log_checked);
}

TEST(ImaAppraisal, ViolationIsNotApprovedByAnAllowList) {
  SoftwareAttester sw;
  testing::ImaEntry good = testing::MakeImaEntry("/usr/bin/good", "good");
  Forged f = ForgeWithIma(sw, {good, testing::MakeImaViolation("/var/log/written")});
  // Without a policy it replays (affirming), but nothing is approved: no executables claim.
  AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
  ASSERT_TRUE(r.affirming()) << r.Summary();
  EXPECT_TRUE(r.ima_log_checked);
  EXPECT_EQ(r.ima_violations, 1u);
  EXPECT_EQ(Executables(r, f.options.expected_nonce), 0);
  // With reference values and an allow list holding every real file: the violation is refused.
  AttestationPolicy policy;
  policy.pcrs = f.options.expected_pcrs;
  for (const auto& [i, v] : f.evidence.quotes[0].pcrs) {
    policy.reference_values[i] = v;
  }
  policy.allowed_event_digests = {good.file_sha256};
  f.options.policy = &policy;
  r = AppraiseEvidence(f.evidence, f.options);
  EXPECT_EQ(Codes(r), CodeSet({"event_not_allowed"})) << r.Summary();
  EXPECT_NE(r.Summary().find("IMA violation entry 1"), std::string::npos) << r.Summary();
}

TEST(ImaAppraisal, ApprovedExecutablesNeedAnAllowList) {
  SoftwareAttester sw;
  testing::ImaEntry good = testing::MakeImaEntry("/usr/bin/good", "good");
  Forged f = ForgeWithIma(sw, {good});
  AppraisalResult r = AppraiseEvidence(f.evidence, f.options);
  ASSERT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(Executables(r, f.options.expected_nonce), 0) << "a replay alone approves nothing";
  AttestationPolicy policy;
  policy.pcrs = f.options.expected_pcrs;
  for (const auto& [i, v] : f.evidence.quotes[0].pcrs) {
    policy.reference_values[i] = v;
  }
  f.options.policy = &policy;
  r = AppraiseEvidence(f.evidence, f.options);
  ASSERT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(Executables(r, f.options.expected_nonce), 3) << "boot approved by reference values";
  policy.allowed_event_digests = {good.file_sha256};
  r = AppraiseEvidence(f.evidence, f.options);
  ASSERT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(Executables(r, f.options.expected_nonce), 2) << "boot and run time approved";
}

}  // namespace
}  // namespace wimse::attest
