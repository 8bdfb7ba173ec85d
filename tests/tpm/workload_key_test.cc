#include <sys/stat.h>

#include <thread>
#include <vector>

#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/tss2_key.h"
#include "support/tpm_fixture.h"
#include "tpm/templates.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse {
namespace {

using testing::TpmTest;
using WorkloadKeyTest = TpmTest;

TEST_F(WorkloadKeyTest, CreateSaveReloadSignVerifiesInSoftware) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  const TPMT_PUBLIC& area = (*key)->public_area();
  EXPECT_EQ(area.objectAttributes, tpm::kWorkloadKeyAttributes);
  EXPECT_EQ(area.objectAttributes & TPMA_OBJECT_DECRYPT, 0u);

  std::string dir = TempDir();
  std::string path = dir + "/key.pem";
  ASSERT_TRUE((*key)->Save(path).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pem = ReadFileString(path);
  ASSERT_TRUE(pem.ok());
  EXPECT_NE(pem->find("-----BEGIN TSS2 PRIVATE KEY-----"), std::string::npos);

  auto reloaded = tpm::WorkloadKey::Open(ctx_, path);
  ASSERT_TRUE(reloaded.ok()) << reloaded.error().ToString();
  EXPECT_EQ((*reloaded)->name(), (*key)->name());
  EXPECT_EQ(EVP_PKEY_eq((*reloaded)->public_key(), (*key)->public_key()), 1);

  auto digest = Digest(HashAlg::kSha256, AsBytes("workload"));
  ASSERT_TRUE(digest.ok());
  ctx_->FlushCache();  // force a real TPM2_Load from the file's blobs
  auto sig = (*reloaded)->SignDigest(HashAlg::kSha256, *digest);
  ASSERT_TRUE(sig.ok()) << sig.error().ToString();
  ASSERT_EQ(sig->size(), 64u);
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, *digest, *sig).ok());
  Bytes wrong = *digest;
  wrong[0] ^= 1;
  EXPECT_FALSE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, wrong, *sig).ok());
}

TEST_F(WorkloadKeyTest, WrongDigestLengthRejectedBeforeTheTpm) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok());
  Bytes short_digest(20, 1);
  auto sig = (*key)->SignDigest(HashAlg::kSha256, short_digest);
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().layer(), Layer::kUsage);
}

TEST_F(WorkloadKeyTest, ManyKeysMoreThanSlotsStillSign) {
  // A direct swtpm TCTI has 3 object slots; five keys used round-robin must all work.
  std::vector<std::shared_ptr<tpm::WorkloadKey>> keys;
  for (int i = 0; i < 5; ++i) {
    auto k = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    keys.push_back(*k);
  }
  auto digest = Digest(HashAlg::kSha256, AsBytes("slots"));
  ASSERT_TRUE(digest.ok());
  for (int round = 0; round < 2; ++round) {
    for (auto& k : keys) {
      auto sig = k->SignDigest(HashAlg::kSha256, *digest);
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
      EXPECT_TRUE(VerifyDigest(k->public_key(), HashAlg::kSha256, *digest, *sig).ok());
    }
  }
}

TEST_F(WorkloadKeyTest, ThreadsShareOneContext) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok());
  auto digest = Digest(HashAlg::kSha256, AsBytes("threads"));
  ASSERT_TRUE(digest.ok());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto sig = (*key)->SignDigest(HashAlg::kSha256, *digest);
        if (sig.ok() && VerifyDigest((*key)->public_key(), HashAlg::kSha256, *digest, *sig).ok()) {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 40);
}

TEST_F(WorkloadKeyTest, CorruptKeyFileIsAClearParseError) {
  std::string dir = TempDir();
  std::string path = dir + "/bad.pem";
  ASSERT_TRUE(WriteFileAtomic(path, std::string_view("-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n"
                                                     "-----END TSS2 PRIVATE KEY-----\n"))
                  .ok());
  auto key = tpm::WorkloadKey::Open(ctx_, path);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().layer(), Layer::kParse);
  EXPECT_NE(key.error().message().find(path), std::string::npos);
  auto missing = tpm::WorkloadKey::Open(ctx_, dir + "/missing.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().layer(), Layer::kIo);
}

TEST(TpmContextNoTpm, UnreachableTctiIsOneClearError) {
  tpm::TpmContext ctx("swtpm:host=127.0.0.1,port=1");
  auto s = ctx.Connect();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().layer(), Layer::kTcti);
  std::string text = s.error().ToString();
  EXPECT_NE(text.find("swtpm:host=127.0.0.1,port=1"), std::string::npos) << text;
  EXPECT_NE(text.find("0x"), std::string::npos) << text;
}

}  // namespace
}  // namespace wimse
