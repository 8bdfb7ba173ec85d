// Unit tests for src/jose: strict base64url, strict JSON, JWK, JWS sign/verify.
#include <gtest/gtest.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/json.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/tokens/token_test_util.h"

namespace wimse::jose {
namespace {

TEST(Base64Url, RoundTripAllLengths) {
  Bytes data;
  for (int i = 0; i < 70; ++i) {
    auto enc = Base64UrlEncode(data);
    EXPECT_EQ(enc.find('='), std::string::npos);
    auto dec = Base64UrlDecode(enc);
    ASSERT_TRUE(dec.ok()) << dec.error().ToString();
    EXPECT_EQ(*dec, data);
    data.push_back(static_cast<uint8_t>(i * 37 + 250));
  }
}

TEST(Base64Url, KnownValues) {
  // RFC 4648 §10 test vectors, base64url without padding.
  EXPECT_EQ(Base64UrlEncode(std::string_view("f")), "Zg");
  EXPECT_EQ(Base64UrlEncode(std::string_view("fo")), "Zm8");
  EXPECT_EQ(Base64UrlEncode(std::string_view("foo")), "Zm9v");
  EXPECT_EQ(Base64UrlEncode(std::string_view("foobar")), "Zm9vYmFy");
  const uint8_t bytes[] = {0xfb, 0xff};
  EXPECT_EQ(Base64UrlEncode(ByteView(bytes)), "-_8");
}

TEST(Base64Url, RejectsNonCanonical) {
  EXPECT_EQ(Base64UrlDecode("Zg==").error().message(), "base64url has padding");
  EXPECT_EQ(Base64UrlDecode("Zm8=").error().message(), "base64url has padding");
  EXPECT_EQ(Base64UrlDecode("+_8").error().message(), "invalid base64url character");
  EXPECT_EQ(Base64UrlDecode("-/8").error().message(), "invalid base64url character");
  EXPECT_EQ(Base64UrlDecode("Zm 9v").error().message(), "invalid base64url character");
  EXPECT_EQ(Base64UrlDecode("Zm9v\n").error().message(), "invalid base64url character");
  EXPECT_EQ(Base64UrlDecode("Zm9vY").error().message(), "invalid base64url length");
  // "Zh" decodes to 'f' too if the 4 unused bits are ignored.
  EXPECT_EQ(Base64UrlDecode("Zh").error().message(), "base64url has non-zero trailing bits");
  EXPECT_EQ(Base64UrlDecode("Zm9").error().message(), "base64url has non-zero trailing bits");
  EXPECT_TRUE(Base64UrlDecode("Zm8").ok());
}

TEST(StrictJson, ParsesObject) {
  auto j = ParseJsonObject(R"({"a":1,"b":{"c":[1,2,"x"]},"d":"\u00e9"})");
  ASSERT_TRUE(j.ok()) << j.error().ToString();
  EXPECT_EQ((*j)["a"], 1);
  EXPECT_EQ((*j)["b"]["c"][2], "x");
  EXPECT_EQ((*j)["d"], "\xc3\xa9");
}

TEST(StrictJson, RejectsDuplicateMembers) {
  EXPECT_EQ(ParseJsonObject(R"({"alg":"none","alg":"ES256"})").error().message(),
            "duplicate member \"alg\"");
  EXPECT_EQ(ParseJsonObject(R"({"cnf":{"jwk":{},"jwk":{}}})").error().message(),
            "duplicate member \"jwk\"");
  // Same name spelled with a unicode escape (C22 case 4).
  EXPECT_EQ(ParseJsonObject(R"({"aud":"a","\u0061ud":"b"})").error().message(),
            "duplicate member \"aud\"");
  // The same name in different objects is fine.
  EXPECT_TRUE(ParseJsonObject(R"({"a":{"x":1},"b":{"x":2}})").ok());
}

TEST(StrictJson, RejectsMalformedAndOversized) {
  EXPECT_FALSE(ParseJsonObject("{").ok());
  EXPECT_FALSE(ParseJsonObject(R"({"a":1} x)").ok());
  EXPECT_FALSE(ParseJsonObject(R"({"a":1}{"b":2})").ok());
  EXPECT_FALSE(ParseJsonObject(R"({'a':1})").ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":\"\xff\"}").ok());
  EXPECT_FALSE(ParseJsonObject(R"({"a":1e400})").ok());
  EXPECT_EQ(ParseJsonObject("[1]").error().message(), "JSON is not an object");
  JsonLimits small;
  small.max_bytes = 10;
  EXPECT_EQ(ParseJsonObject(R"({"abcdefgh":1})", small).error().message(), "JSON too large");
  std::string deep = std::string(20, '[');
  deep = "{\"a\":" + deep + std::string(20, ']') + "}";
  EXPECT_EQ(ParseJsonObject(deep).error().message(), "JSON nested too deeply");
}

TEST(StrictJson, NumericDates) {
  auto read = [](const std::string& v) {
    auto j = ParseJsonObject("{\"exp\":" + v + "}");
    EXPECT_TRUE(j.ok()) << v;
    return OptionalNumericDate(*j, "exp");
  };
  EXPECT_EQ(read("1745512510")->value().Floor(), 1745512510);
  EXPECT_EQ(read("0")->value().Floor(), 0);
  EXPECT_EQ(read("60.5")->value().Floor(), 60);
  EXPECT_EQ(read("60.5")->value().Ceil(), 61);
  for (const char* bad :
       {"-386380800", "9223372036854775807", "9223372036854775808", "18446744073709551615", "1e30",
        "\"1999999999\"", "true", "null", "{}", "[]", "-0.5"}) {
    auto r = read(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().message().rfind("invalid exp", 0), 0u) << bad;
  }
  auto j = ParseJsonObject("{}");
  EXPECT_FALSE(OptionalNumericDate(*j, "exp")->has_value());
}

TEST(Jwk, PublicKeyRoundTripAndThumbprint) {
  for (KeyAlg alg : {KeyAlg::kEcP256, KeyAlg::kEcP384, KeyAlg::kRsa2048}) {
    auto signer = SoftwareSigner::Generate(alg);
    ASSERT_TRUE(signer.ok());
    auto key_alg = JwsAlgForKey((*signer)->public_key());
    ASSERT_TRUE(key_alg.ok());
    auto jwk = PublicKeyToJwk((*signer)->public_key(), JwsAlgName(*key_alg));
    ASSERT_TRUE(jwk.ok()) << jwk.error().ToString();
    auto parsed = ParsePublicJwk(*jwk);
    ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
    EXPECT_EQ(EVP_PKEY_eq(parsed->key.get(), (*signer)->public_key()), 1);
    if (alg == KeyAlg::kEcP256) {
      EXPECT_EQ((*jwk)["x"].get<std::string>().size(), 43u);
      EXPECT_EQ((*jwk)["y"].get<std::string>().size(), 43u);
      EXPECT_EQ((*jwk)["alg"], "ES256");
    }
    // The thumbprint ignores alg/kid and is 43 characters.
    auto t1 = JwkThumbprint(*jwk);
    Json with_kid = *jwk;
    with_kid["kid"] = "k1";
    with_kid.erase("alg");
    EXPECT_EQ(*t1, *JwkThumbprint(with_kid));
    EXPECT_EQ(t1->size(), 43u);
  }
}

TEST(Jwk, KnownThumbprintEd25519) {
  // RFC 8037 Appendix A.3: thumbprint of the Ed25519 example key.
  Json jwk = {
      {"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}};
  EXPECT_EQ(*JwkThumbprint(jwk), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  EXPECT_TRUE(ParsePublicJwk(jwk).ok());
}

TEST(Jwk, RejectsPrivateAndBadKeys) {
  auto signer = SoftwareSigner::Generate(KeyAlg::kEcP256);
  Json jwk = *PublicKeyToJwk((*signer)->public_key(), "ES256");
  Json priv = jwk;
  priv["d"] = "AAAA";
  EXPECT_EQ(ParsePublicJwk(priv).error().message(), "jwk contains private member \"d\"");
  Json oct = {{"kty", "oct"}, {"k", "AAAA"}};
  EXPECT_EQ(ParsePublicJwk(oct).error().message(), "jwk contains private member \"k\"");
  Json oct2 = {{"kty", "oct"}};
  EXPECT_EQ(ParsePublicJwk(oct2).error().message(), "jwk kty oct not allowed");
  Json wrong_alg = jwk;
  wrong_alg["alg"] = "ES384";
  EXPECT_EQ(ParsePublicJwk(wrong_alg).error().message(), "jwk alg does not match the key");
  Json short_x = jwk;
  short_x["x"] = Base64UrlEncode(Bytes(31, 1));
  EXPECT_EQ(ParsePublicJwk(short_x).error().message(), "jwk x has the wrong length");
  Json off_curve = jwk;
  off_curve["y"] = Base64UrlEncode(Bytes(32, 1));
  EXPECT_EQ(ParsePublicJwk(off_curve).error().message(), "jwk EC point is not on the curve");
}

class JwsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SoftwareSigner::Generate(KeyAlg::kEcP256);
    ASSERT_TRUE(s.ok());
    signer_ = std::move(s).value();
  }
  Status Verify(std::string_view token) {
    auto jws = ParseCompactJwsUnverified(token);
    if (!jws.ok()) {
      return jws.error();
    }
    auto alg = JwsAlgFromName(jws->header["alg"].get<std::string>());
    if (!alg.ok()) {
      return alg.error();
    }
    return VerifyJwsSignature(signer_->public_key(), *alg, jws->signing_input, jws->signature);
  }
  std::unique_ptr<SoftwareSigner> signer_;
};

TEST_F(JwsTest, SignVerifyRoundTripEs256AndEs384) {
  auto token = SignCompactJws(*signer_, Json{{"typ", "x"}}, R"({"a":1})");
  ASSERT_TRUE(token.ok()) << token.error().ToString();
  EXPECT_EQ(testing::SignatureOf(*token).size(), 64u);
  EXPECT_TRUE(Verify(*token).ok());
  auto p384 = SoftwareSigner::Generate(KeyAlg::kEcP384);
  auto t384 = SignCompactJws(**p384, Json::object(), "{}");
  auto jws = ParseCompactJwsUnverified(*t384);
  EXPECT_EQ(jws->header["alg"], "ES384");
  EXPECT_EQ(jws->signature.size(), 96u);
  EXPECT_TRUE(
      VerifyJwsSignature((*p384)->public_key(), JwsAlg::kEs384, jws->signing_input, jws->signature)
          .ok());
}

TEST_F(JwsTest, StructureRules) {
  auto token = *SignCompactJws(*signer_, Json::object(), "{}");
  EXPECT_EQ(Verify(token + ".x.y").error().message(),
            "not a compact JWS: expected exactly three segments");
  EXPECT_EQ(Verify("a.b").error().message(), "not a compact JWS: expected exactly three segments");
  std::string no_sig = token.substr(0, token.rfind('.') + 1);
  EXPECT_EQ(Verify(no_sig).error().message(), "not a compact JWS: empty segment");
  EXPECT_EQ(Verify(token + "=").error().message(), "signature: base64url has padding");
  JwsLimits limits;
  limits.max_token_bytes = 16;
  EXPECT_EQ(ParseCompactJwsUnverified(token, limits).error().message(), "token too large");
}

TEST_F(JwsTest, AlgorithmComesFromTheKey) {
  auto token = *SignCompactJws(*signer_, Json::object(), "{}");
  auto jws = *ParseCompactJwsUnverified(token);
  for (JwsAlg wrong : {JwsAlg::kEs384, JwsAlg::kRs256, JwsAlg::kEdDsa}) {
    EXPECT_EQ(VerifyJwsSignature(signer_->public_key(), wrong, jws.signing_input, jws.signature)
                  .error()
                  .message(),
              "algorithm not allowed for key");
  }
  for (const char* bad : {"none", "None", "NONE", "nOnE", "HS256", "es256", "ES256 ", ""}) {
    EXPECT_FALSE(JwsAlgFromName(bad).ok()) << bad;
  }
  EXPECT_EQ(JwsAlgFromName("HS256").error().message(), "algorithm not allowed: \"HS256\"");
}

TEST_F(JwsTest, PsychicAndMalformedEcdsaSignatures) {
  auto token = *SignCompactJws(*signer_, Json::object(), "{}");
  Bytes sig = testing::SignatureOf(token);
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  Bytes n(32);
  BN_bn2binpad(EC_GROUP_get0_order(group.get()), n.data(), 32);
  Bytes n_plus_1 = n;
  n_plus_1[31] += 1;  // the P-256 order ends in 0x51, so no carry
  Bytes n_minus_1 = n;
  n_minus_1[31] -= 1;
  Bytes r(sig.begin(), sig.begin() + 32), s(sig.begin() + 32, sig.end());
  auto cat = [](const Bytes& a, const Bytes& b) {
    Bytes out = a;
    out.insert(out.end(), b.begin(), b.end());
    return out;
  };
  Bytes zero(32, 0);
  const std::string kRange = "ECDSA signature r or s out of range";
  EXPECT_EQ(Verify(testing::WithSignature(token, Bytes(64, 0))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(zero, s))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(r, zero))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(n, n))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(n, n_minus_1))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(n_plus_1, s))).error().message(), kRange);
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(r, n))).error().message(), kRange);
  // In range but wrong: n-1 is a valid scalar, the signature just does not verify.
  EXPECT_EQ(Verify(testing::WithSignature(token, cat(r, n_minus_1))).error().message(),
            "signature does not verify");
  // DER (the same signature re-encoded), DER of two zero INTEGERs, wrong lengths.
  auto der = EcdsaRawToDer(sig);
  const std::string kLen = "ECDSA signature has the wrong length";
  EXPECT_EQ(Verify(testing::WithSignature(token, *der)).error().message(), kLen);
  const uint8_t der_zero[] = {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00};
  EXPECT_EQ(Verify(testing::WithSignature(token, ByteView(der_zero))).error().message(), kLen);
  EXPECT_EQ(Verify(testing::WithSignature(token, ByteView(sig).first(63))).error().message(), kLen);
  Bytes longer = sig;
  longer.push_back(0);
  EXPECT_EQ(Verify(testing::WithSignature(token, longer)).error().message(), kLen);
  // Tampered signature bit.
  Bytes flipped = sig;
  flipped[10] ^= 1;
  EXPECT_EQ(Verify(testing::WithSignature(token, flipped)).error().message(),
            "signature does not verify");
}

TEST_F(JwsTest, HighSAcceptedAndLeadingZeroSignaturesVerify) {
  // High-S (s' = n - s) verifies: documented policy (TPMs emit high-S); replay protection is by
  // jti, tested in wimse_token_test.
  auto token = *SignCompactJws(*signer_, Json::object(), "{}");
  Bytes sig = testing::SignatureOf(token);
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  BignumPtr s(BN_bin2bn(sig.data() + 32, 32, nullptr));
  BignumPtr ns(BN_new());
  BN_sub(ns.get(), EC_GROUP_get0_order(group.get()), s.get());
  Bytes high = sig;
  BN_bn2binpad(ns.get(), high.data() + 32, 32);
  EXPECT_TRUE(Verify(testing::WithSignature(token, high)).ok());
  // C16: r or s below 2^248 must still be 32 bytes wide. Sign until one shows up.
  int found = 0;
  for (int i = 0; i < 3000 && found < 3; ++i) {
    auto t = *SignCompactJws(*signer_, Json{{"i", i}}, "{}");
    Bytes sg = testing::SignatureOf(t);
    ASSERT_EQ(sg.size(), 64u);
    if (sg[0] == 0 || sg[32] == 0) {
      ++found;
      EXPECT_TRUE(Verify(t).ok());
    }
  }
  EXPECT_GT(found, 0);
}

TEST_F(JwsTest, CritRules) {
  auto with_header = [&](const std::string& header) {
    return testing::SignRaw(*signer_, header, "{}");
  };
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":["exp1"],"exp1":1})")).error().message(),
            "unsupported critical header parameter");
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":[]})")).error().message(),
            "malformed crit: not a non-empty array");
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":"exp1","exp1":1})")).error().message(),
            "malformed crit: not a non-empty array");
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":[null]})")).error().message(),
            "malformed crit: entry is not a non-empty string");
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":["alg"]})")).error().message(),
            "malformed crit: names a registered header parameter");
  EXPECT_EQ(Verify(with_header(R"({"alg":"ES256","crit":["absent"]})")).error().message(),
            "malformed crit: names a parameter absent from the header");
  EXPECT_EQ(
      Verify(with_header(R"({"alg":"ES256","crit":["exp1","exp1"],"exp1":1})")).error().message(),
      "malformed crit: duplicate entry");
  EXPECT_TRUE(Verify(with_header(R"({"alg":"ES256"})")).ok());
}

}  // namespace
}  // namespace wimse::jose
