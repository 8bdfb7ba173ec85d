// wimsetpm provider against a private swtpm (suite `tpm`, run under tests/with_swtpm.sh).
//
// The provider is loaded from the build tree into a fresh OSSL_LIB_CTX together with the
// default provider. A key is made with tpm::WorkloadKey::Create, saved as a TSS2 file, loaded
// back through the provider's decoders, and every signature is verified in SOFTWARE with the
// public key exported by the TPM (never by the provider that signed).
//
// swtpm serves one TCP connection at a time, and the provider (its own copy of the core
// library) opens its own connection: the test's TPM context is therefore closed before the
// provider is used, and each test unloads the provider (which finalizes its connection) before
// counting transient objects with a fresh context.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <cstring>
#include <string>

#include "crypto/ecdsa.h"
#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/tss2_key.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse {
namespace {

std::string BuildRoot() {
  const char* b = getenv("WIMSE_BUILD_ROOT");
  return b != nullptr ? b : ".";
}

std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  char buf[256];
  const char* data = nullptr;
  int flags = 0;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    out += buf;
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0) {
      out += ": ";
      out += data;
    }
    out += "\n";
  }
  return out;
}

size_t TransientObjects(const std::string& tcti) {
  auto ctx = std::make_shared<tpm::TpmContext>(tcti);
  auto n = ctx->CountTransientObjects();
  EXPECT_TRUE(n.ok()) << n.error().ToString();
  return n.ok() ? *n : 999;
}

class ProviderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tcti_ = new std::string(tpm::ResolveTcti(""));
    char tmpl[] = "/tmp/wimse-provider-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    key_path_ = new std::string(*dir_ + "/key.pem");
    spki_der_ = new Bytes();
    // A private context, closed at the end of this scope (one swtpm connection at a time).
    auto ctx = std::make_shared<tpm::TpmContext>(*tcti_);
    auto key = tpm::WorkloadKey::Create(ctx, KeyAlg::kEcP256);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    ASSERT_TRUE((*key)->Save(*key_path_).ok());
    auto der = PublicKeyToDer((*key)->public_key());
    ASSERT_TRUE(der.ok());
    *spki_der_ = *der;
  }

  static void TearDownTestSuite() {
    std::string cmd = "rm -rf '" + *dir_ + "'";
    (void)system(cmd.c_str());
    delete tcti_;
    delete dir_;
    delete key_path_;
    delete spki_der_;
  }

  void SetUp() override {
    ERR_clear_error();
    libctx_ = OSSL_LIB_CTX_new();
    ASSERT_NE(libctx_, nullptr);
    std::string path = BuildRoot() + "/provider";
    ASSERT_EQ(OSSL_PROVIDER_set_default_search_path(libctx_, path.c_str()), 1);
    // default first: in OpenSSL 3.0 an unqualified fetch ("EC" keymgmt for TLS groups) returns
    // the implementation of the provider activated first.
    default_ = OSSL_PROVIDER_load(libctx_, "default");
    ASSERT_NE(default_, nullptr);
    wimsetpm_ = OSSL_PROVIDER_load(libctx_, "wimsetpm");
    ASSERT_NE(wimsetpm_, nullptr) << OpenSslErrors();
  }

  void TearDown() override {
    if (wimsetpm_ != nullptr) {
      OSSL_PROVIDER_unload(wimsetpm_);
    }
    if (default_ != nullptr) {
      OSSL_PROVIDER_unload(default_);
    }
    OSSL_LIB_CTX_free(libctx_);
    // The provider flushed its objects and closed its connection in teardown.
    EXPECT_EQ(TransientObjects(*tcti_), 0u);
  }

  EvpPkeyPtr LoadKey(const std::string& path) {
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio) {
      return nullptr;
    }
    return EvpPkeyPtr(
        PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, libctx_, nullptr));
  }

  // The TPM's public key as a software key in the default library context.
  static EvpPkeyPtr SoftwarePublicKey() {
    auto k = PublicKeyFromDer(*spki_der_);
    EXPECT_TRUE(k.ok());
    return k.ok() ? std::move(k).value() : nullptr;
  }

  static bool VerifyInSoftware(const char* md, ByteView msg, ByteView sig) {
    EvpPkeyPtr pub = SoftwarePublicKey();
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    return EVP_DigestVerifyInit_ex(ctx.get(), nullptr, md, nullptr, nullptr, pub.get(),
                                   nullptr) == 1 &&
           EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), msg.data(), msg.size()) == 1;
  }

  // Strict DER: parses, and re-encoding the parsed r||s gives the same bytes (C13).
  static void ExpectMinimalDer(ByteView sig, size_t field_size) {
    auto raw = EcdsaDerToRaw(sig, field_size);
    ASSERT_TRUE(raw.ok()) << raw.error().ToString();
    auto again = EcdsaRawToDer(*raw);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(Bytes(sig.begin(), sig.end()), *again);
  }

  static std::string* tcti_;
  static std::string* dir_;
  static std::string* key_path_;
  static Bytes* spki_der_;

  OSSL_LIB_CTX* libctx_ = nullptr;
  OSSL_PROVIDER* default_ = nullptr;
  OSSL_PROVIDER* wimsetpm_ = nullptr;
};

std::string* ProviderTest::tcti_ = nullptr;
std::string* ProviderTest::dir_ = nullptr;
std::string* ProviderTest::key_path_ = nullptr;
Bytes* ProviderTest::spki_der_ = nullptr;

TEST_F(ProviderTest, RegistersOnlyKeyBoundOperations) {
  int no_cache = 0;
  for (int op : {OSSL_OP_DIGEST, OSSL_OP_CIPHER, OSSL_OP_RAND, OSSL_OP_KEYEXCH, OSSL_OP_KDF,
                 OSSL_OP_MAC, OSSL_OP_KEM, OSSL_OP_ASYM_CIPHER}) {
    EXPECT_EQ(OSSL_PROVIDER_query_operation(wimsetpm_, op, &no_cache), nullptr) << op;
  }
  const OSSL_ALGORITHM* sig = OSSL_PROVIDER_query_operation(wimsetpm_, OSSL_OP_SIGNATURE,
                                                            &no_cache);
  ASSERT_NE(sig, nullptr);
  EXPECT_STREQ(sig[0].algorithm_names, "ECDSA");
  EXPECT_EQ(sig[1].algorithm_names, nullptr);
  // An unqualified digest fetch must never land in our provider.
  EvpMdPtr md(EVP_MD_fetch(libctx_, "SHA256", nullptr));
  ASSERT_TRUE(md);
  EXPECT_STREQ(OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md.get())), "default");
}

TEST_F(ProviderTest, LoadsTss2KeyWithPublicParams) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key) << OpenSslErrors();
  EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
  EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "id-ecPublicKey"));
  EXPECT_EQ(EVP_PKEY_get_bits(key.get()), 256);
  EXPECT_EQ(EVP_PKEY_get_security_bits(key.get()), 128);
  EXPECT_EQ(EVP_PKEY_get_size(key.get()), 72);
  char name[64] = {};
  // 1: advisory (2 would mean mandatory, which would restrict TLS sigalgs).
  ASSERT_EQ(EVP_PKEY_get_default_digest_name(key.get(), name, sizeof(name)), 1);
  EXPECT_STREQ(name, "SHA256");
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, name,
                                           sizeof(name), nullptr),
            1);
  EXPECT_STREQ(name, "prime256v1");
  uint8_t pub[133];
  size_t pub_len = 0;
  ASSERT_EQ(EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, pub,
                                            sizeof(pub), &pub_len),
            1);
  EvpPkeyPtr sw = SoftwarePublicKey();
  auto expected = EcPublicPoint(sw.get());
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(Bytes(pub, pub + pub_len), *expected);
  EXPECT_EQ(EVP_PKEY_get_ec_point_conv_form(key.get()), POINT_CONVERSION_UNCOMPRESSED);
}

TEST_F(ProviderTest, LoadsThroughOsslDecoderAndEncodesSpki) {
  auto pem = ReadFileBytes(*key_path_);
  ASSERT_TRUE(pem.ok());
  EVP_PKEY* raw_key = nullptr;
  OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(
      &raw_key, "PEM", nullptr, "EC", OSSL_KEYMGMT_SELECT_KEYPAIR, libctx_, nullptr);
  ASSERT_NE(dctx, nullptr);
  const unsigned char* data = pem->data();
  size_t len = pem->size();
  EXPECT_EQ(OSSL_DECODER_from_data(dctx, &data, &len), 1) << OpenSslErrors();
  OSSL_DECODER_CTX_free(dctx);
  EvpPkeyPtr key(raw_key);
  ASSERT_TRUE(key);
  // SPKI from our encoder equals the SPKI of the TPM public area.
  int der_len = i2d_PUBKEY(key.get(), nullptr);
  ASSERT_GT(der_len, 0) << OpenSslErrors();
  Bytes der(static_cast<size_t>(der_len));
  uint8_t* p = der.data();
  ASSERT_EQ(i2d_PUBKEY(key.get(), &p), der_len);
  EXPECT_EQ(der, *spki_der_);
}

TEST_F(ProviderTest, DigestSignVerifiesInSoftwareAndIsMinimalDer) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key) << OpenSslErrors();
  for (const char* md : {"SHA256", "SHA384", "SHA512"}) {
    for (int i = 0; i < 40; ++i) {
      Bytes msg(1 + static_cast<size_t>(i) * 37);
      ASSERT_EQ(RAND_bytes(msg.data(), static_cast<int>(msg.size())), 1);
      EvpMdCtxPtr ctx(EVP_MD_CTX_new());
      ASSERT_EQ(EVP_DigestSignInit_ex(ctx.get(), nullptr, md, libctx_, nullptr, key.get(),
                                      nullptr),
                1)
          << OpenSslErrors();
      size_t sig_len = 0;
      ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &sig_len, msg.data(), msg.size()), 1);
      ASSERT_EQ(sig_len, 72u);
      Bytes sig(sig_len);
      ASSERT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &sig_len, msg.data(), msg.size()), 1)
          << OpenSslErrors();
      ASSERT_LE(sig_len, 72u);
      sig.resize(sig_len);
      ExpectMinimalDer(sig, 32);
      EXPECT_TRUE(VerifyInSoftware(md, msg, sig)) << md << " message " << i;
    }
  }
}

TEST_F(ProviderTest, StreamingDigestSignUsesDupCtx) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key);
  Bytes msg(5000);
  ASSERT_EQ(RAND_bytes(msg.data(), static_cast<int>(msg.size())), 1);
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", libctx_, nullptr, key.get(),
                                  nullptr),
            1);
  ASSERT_EQ(EVP_DigestSignUpdate(ctx.get(), msg.data(), 1000), 1);
  ASSERT_EQ(EVP_DigestSignUpdate(ctx.get(), msg.data() + 1000, msg.size() - 1000), 1);
  size_t sig_len = 0;
  ASSERT_EQ(EVP_DigestSignFinal(ctx.get(), nullptr, &sig_len), 1);
  Bytes sig(sig_len);
  // On 3.0 this duplicates the signature context first (dupctx is mandatory).
  ASSERT_EQ(EVP_DigestSignFinal(ctx.get(), sig.data(), &sig_len), 1) << OpenSslErrors();
  sig.resize(sig_len);
  ExpectMinimalDer(sig, 32);
  EXPECT_TRUE(VerifyInSoftware("SHA256", msg, sig));
}

TEST_F(ProviderTest, PrehashedSignChecksDigestLength) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key);
  Bytes msg = {'h', 'e', 'l', 'l', 'o'};
  auto digest = Digest(HashAlg::kSha256, msg);
  ASSERT_TRUE(digest.ok());
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx_, key.get(), nullptr));
  ASSERT_TRUE(ctx);
  ASSERT_EQ(EVP_PKEY_sign_init(ctx.get()), 1) << OpenSslErrors();
  size_t sig_len = 0;
  ASSERT_EQ(EVP_PKEY_sign(ctx.get(), nullptr, &sig_len, digest->data(), digest->size()), 1);
  Bytes sig(sig_len);
  ASSERT_EQ(EVP_PKEY_sign(ctx.get(), sig.data(), &sig_len, digest->data(), digest->size()), 1)
      << OpenSslErrors();
  sig.resize(sig_len);
  EXPECT_TRUE(VerifyInSoftware("SHA256", msg, sig));

  // 31 bytes is no digest at all; with SHA-256 set, 48 bytes is the wrong digest.
  sig.assign(72, 0);
  sig_len = sig.size();
  EXPECT_EQ(EVP_PKEY_sign(ctx.get(), sig.data(), &sig_len, digest->data(), 31), 0);
  EXPECT_NE(OpenSslErrors().find("wrong data length"), std::string::npos);
  ASSERT_EQ(EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()), 1);
  Bytes long_digest(48, 0xab);
  sig_len = sig.size();
  EXPECT_EQ(EVP_PKEY_sign(ctx.get(), sig.data(), &sig_len, long_digest.data(), 48), 0);
  EXPECT_NE(OpenSslErrors().find("wrong data length"), std::string::npos);
  // SHA-1 is refused.
  EXPECT_LE(EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha1()), 0);
  ERR_clear_error();
}

TEST_F(ProviderTest, ExportRefusesPrivateKey) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key);
  OSSL_PARAM* params = nullptr;
  EXPECT_EQ(EVP_PKEY_todata(key.get(), EVP_PKEY_KEYPAIR, &params), 0);
  EXPECT_EQ(params, nullptr);
  ERR_clear_error();
  ASSERT_EQ(EVP_PKEY_todata(key.get(), EVP_PKEY_PUBLIC_KEY, &params), 1);
  OsslParamPtr owned(params);
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->data_size, 65u);
  EXPECT_EQ(OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY), nullptr);
}

TEST_F(ProviderTest, SelfSignedCertificateMatchesKey) {
  EvpPkeyPtr key = LoadKey(*key_path_);
  ASSERT_TRUE(key);
  X509Ptr cert(X509_new_ex(libctx_, nullptr));
  ASSERT_TRUE(cert);
  ASSERT_EQ(X509_set_version(cert.get(), X509_VERSION_3), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
  ASSERT_EQ(X509_set_issuer_name(cert.get(), name), 1);
  ASSERT_EQ(X509_set_pubkey(cert.get(), key.get()), 1) << OpenSslErrors();
  EvpMdCtxPtr mdctx(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit_ex(mdctx.get(), nullptr, "SHA256", libctx_, nullptr, key.get(),
                                  nullptr),
            1);
  ASSERT_GT(X509_sign_ctx(cert.get(), mdctx.get()), 0) << OpenSslErrors();

  // Verified in software; AlgorithmIdentifier ecdsa-with-SHA256 with ABSENT parameters.
  EvpPkeyPtr sw = SoftwarePublicKey();
  EXPECT_EQ(X509_verify(cert.get(), sw.get()), 1);
  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(nullptr, &alg, cert.get());
  const ASN1_OBJECT* oid = nullptr;
  int ptype = 0;
  X509_ALGOR_get0(&oid, &ptype, nullptr, alg);
  EXPECT_EQ(OBJ_obj2nid(oid), NID_ecdsa_with_SHA256);
  EXPECT_EQ(ptype, V_ASN1_UNDEF);

  // Key/certificate matching in both directions (EVP_PKEY_eq, X509_check_private_key).
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1) << OpenSslErrors();
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()), 1);
  EXPECT_EQ(EVP_PKEY_eq(key.get(), X509_get0_pubkey(cert.get())), 1);
  EXPECT_EQ(EVP_PKEY_eq(key.get(), sw.get()), 1);
  // A different key does not match.
  auto other = SoftwareSigner::Generate(KeyAlg::kEcP256);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(EVP_PKEY_eq(key.get(), (*other)->public_key()), 1);
  EXPECT_NE(EVP_PKEY_eq((*other)->public_key(), key.get()), 1);
  ERR_clear_error();
}

TEST_F(ProviderTest, RestrictedKeyIsRefusedAtLoad) {
  // C05: same key with the restricted attribute set in the file's public area. Refused at
  // decode time, before any TPM command.
  auto file = ReadTss2KeyFile(*key_path_);
  ASSERT_TRUE(file.ok());
  auto pub = UnmarshalTpm2bPublic(file->public_blob);
  ASSERT_TRUE(pub.ok());
  pub->publicArea.objectAttributes |= TPMA_OBJECT_RESTRICTED;
  auto blob = MarshalTpm2bPublic(*pub);
  ASSERT_TRUE(blob.ok());
  file->public_blob = *blob;
  std::string path = *dir_ + "/restricted.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, *file).ok());
  EvpPkeyPtr key = LoadKey(path);
  EXPECT_FALSE(key);
  std::string errors = OpenSslErrors();
  EXPECT_NE(errors.find("restricted attestation key cannot sign external data"),
            std::string::npos)
      << errors;
}

TEST_F(ProviderTest, ForeignPemKeysStillLoad) {
  // With the provider active, ordinary PKCS#8 keys must still decode (our decoders stay
  // empty-handed) into the default provider.
  auto sw = SoftwareSigner::Generate(KeyAlg::kEcP256);
  ASSERT_TRUE(sw.ok());
  auto pem = (*sw)->PrivateKeyPem();
  ASSERT_TRUE(pem.ok());
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  EvpPkeyPtr key(
      PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, libctx_, nullptr));
  ASSERT_TRUE(key) << OpenSslErrors();
  OSSL_PARAM* params = nullptr;
  EXPECT_EQ(EVP_PKEY_todata(key.get(), EVP_PKEY_KEYPAIR, &params), 1);
  OSSL_PARAM_free(params);
}

// Provider init does no TPM I/O: with an unreachable TCTI it loads, keys decode, and the first
// signature fails with "cannot connect to the TPM".
TEST(ProviderLazyConnectTest, LoadsWithoutTpmAndFailsAtFirstUse) {
  std::string saved = tpm::ResolveTcti("");
  std::string key_path = "/tmp/wimse-provider-lazy-" + std::to_string(getpid()) + ".pem";
  {
    auto ctx = std::make_shared<tpm::TpmContext>(saved);
    auto key = tpm::WorkloadKey::Create(ctx, KeyAlg::kEcP256);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    ASSERT_TRUE((*key)->Save(key_path).ok());
  }
  ASSERT_EQ(setenv("WIMSE_TPM_TCTI", "swtpm:host=127.0.0.1,port=1", 1), 0);
  OSSL_LIB_CTX* libctx = OSSL_LIB_CTX_new();
  std::string path = BuildRoot() + "/provider";
  ASSERT_EQ(OSSL_PROVIDER_set_default_search_path(libctx, path.c_str()), 1);
  OSSL_PROVIDER* def = OSSL_PROVIDER_load(libctx, "default");
  OSSL_PROVIDER* prov = OSSL_PROVIDER_load(libctx, "wimsetpm");
  ASSERT_EQ(setenv("WIMSE_TPM_TCTI", saved.c_str(), 1), 0);
  ASSERT_NE(prov, nullptr);
  {
    BioPtr bio(BIO_new_file(key_path.c_str(), "r"));
    EvpPkeyPtr key(
        PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, libctx, nullptr));
    ASSERT_TRUE(key) << OpenSslErrors();
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    ASSERT_EQ(EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", libctx, nullptr, key.get(),
                                    nullptr),
              1);
    uint8_t sig[72];
    size_t sig_len = sizeof(sig);
    const uint8_t msg[] = "x";
    EXPECT_EQ(EVP_DigestSign(ctx.get(), sig, &sig_len, msg, sizeof(msg)), 0);
    EXPECT_NE(OpenSslErrors().find("cannot connect to the TPM"), std::string::npos);
  }
  OSSL_PROVIDER_unload(prov);
  OSSL_PROVIDER_unload(def);
  OSSL_LIB_CTX_free(libctx);
  unlink(key_path.c_str());
  EXPECT_EQ(TransientObjects(saved), 0u);
}

}  // namespace
}  // namespace wimse
