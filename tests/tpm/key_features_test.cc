// Issue 3 key layer on swtpm: every algorithm, RSA-PSS salt, auth values in salted encrypted
// sessions (proved on a recorded TPM bus), dictionary-attack behaviour, persistent keys and
// parents, slot pressure, and bad input (key for another TPM, missing handle, truncated file).

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <tss2/tss2_mu.h>
#include <unistd.h>

#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/key_ref.h"
#include "keyfile/tss2_key.h"
#include "support/bus_recorder.h"
#include "support/key_files.h"
#include "support/shell.h"
#include "support/tpm_admin.h"
#include "support/tpm_fixture.h"
#include "tpm/auth_latch.h"
#include "tpm/tcti.h"
#include "tpm/templates.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse {
namespace {

using testing::BusRecorder;
using testing::Contains;
using testing::ResetDictionaryAttack;
using testing::TpmProperty;
using testing::TpmTest;
using KeyFeaturesTest = TpmTest;

Bytes TestDigest(HashAlg hash, const char* msg) {
  auto d = Digest(hash, AsBytes(msg));
  return d.ok() ? *d : Bytes();
}

// Software RSA-PSS verification with a fixed salt length.
bool VerifyPssSalt(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig, int saltlen) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  const EVP_MD* md = EVP_get_digestbyname(HashName(hash));
  return ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), md) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), saltlen) == 1 &&
         EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size()) == 1;
}

TEST_F(KeyFeaturesTest, EveryAlgorithmSignsAndVerifiesInSoftware) {
  struct Case {
    KeyAlg alg;
    HashAlg hash;
  };
  for (Case c :
       {Case{KeyAlg::kEcP256, HashAlg::kSha256}, Case{KeyAlg::kEcP384, HashAlg::kSha384},
        Case{KeyAlg::kRsa2048, HashAlg::kSha256}, Case{KeyAlg::kRsa3072, HashAlg::kSha384}}) {
    auto key = tpm::WorkloadKey::Create(ctx_, c.alg);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    EXPECT_EQ((*key)->alg(), c.alg);
    // Sign-only, never decrypt (DESIGN non-negotiable).
    EXPECT_EQ((*key)->public_area().objectAttributes, tpm::kWorkloadKeyAttributes);
    Bytes digest = TestDigest(c.hash, "every algorithm");
    auto sig = (*key)->SignDigest(c.hash, digest);
    ASSERT_TRUE(sig.ok()) << sig.error().ToString();
    EXPECT_TRUE(VerifyDigest((*key)->public_key(), c.hash, digest, *sig).ok());
    if (c.alg == KeyAlg::kRsa2048 || c.alg == KeyAlg::kRsa3072) {
      EXPECT_EQ(sig->size(), c.alg == KeyAlg::kRsa2048 ? 256u : 384u);
      for (HashAlg h : {HashAlg::kSha256, HashAlg::kSha384, HashAlg::kSha512}) {
        Bytes d = TestDigest(h, "pss");
        auto pss = (*key)->SignDigestRsa(h, d, tpm::WorkloadKey::RsaScheme::kPss);
        ASSERT_TRUE(pss.ok()) << pss.error().ToString();
        EXPECT_TRUE(VerifyPssSalt((*key)->public_key(), h, d, *pss, static_cast<int>(HashSize(h))));
        // Not PKCS#1 v1.5.
        EXPECT_FALSE(VerifyDigest((*key)->public_key(), h, d, *pss).ok());
      }
    }
  }
}

TEST(PssSaltCheck, MaxSaltSignatureIsRefusedWithAClearReason) {
  // What some hardware TPMs return (tpm2-openssl #114): a PSS signature with maximal salt.
  EvpPkeyCtxPtr gen(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  ASSERT_TRUE(gen && EVP_PKEY_keygen_init(gen.get()) == 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(gen.get(), 2048), 1);
  EVP_PKEY* raw = nullptr;
  ASSERT_EQ(EVP_PKEY_generate(gen.get(), &raw), 1);
  EvpPkeyPtr key(raw);
  Bytes digest = TestDigest(HashAlg::kSha256, "salt");
  auto sign = [&](int saltlen) {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    EVP_PKEY_sign_init(ctx.get());
    EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256());
    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), saltlen);
    Bytes sig(256);
    size_t len = sig.size();
    EXPECT_EQ(EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()), 1);
    sig.resize(len);
    return sig;
  };
  EXPECT_TRUE(CheckRsaPssSaltIsDigestLength(key.get(), HashAlg::kSha256, digest,
                                            sign(RSA_PSS_SALTLEN_DIGEST))
                  .ok());
  Status max =
      CheckRsaPssSaltIsDigestLength(key.get(), HashAlg::kSha256, digest, sign(RSA_PSS_SALTLEN_MAX));
  ASSERT_FALSE(max.ok());
  EXPECT_NE(max.error().message().find("salt length is not the digest length"), std::string::npos)
      << max.error().ToString();
  Bytes garbage(256, 0x42);
  EXPECT_FALSE(CheckRsaPssSaltIsDigestLength(key.get(), HashAlg::kSha256, digest, garbage).ok());
}

TEST_F(KeyFeaturesTest, AuthValueKeySignsOnlyWithItsAuthAndNeverRetries) {
  SecretBytes auth(AsBytes("correct horse"));
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, auth);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  EXPECT_TRUE((*key)->needs_auth());
  Bytes digest = TestDigest(HashAlg::kSha256, "auth");
  for (int i = 0; i < 3; ++i) {  // the session is kept across operations
    auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_TRUE(sig.ok()) << sig.error().ToString();
    EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *sig).ok());
  }
  std::string path = TempDir() + "/auth.pem";
  ASSERT_TRUE((*key)->Save(path).ok());
  auto file = ReadTss2KeyFile(path);
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE(file->empty_auth);
  // An explicit FALSE: tpm2-openssl <= 1.2.0 reads an absent field as TRUE and never asks.
  EXPECT_TRUE(file->empty_auth_present);

  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  // No auth given for a key whose file says it needs one by omitting emptyAuth (as wimse-tpm
  // wrote it before): refused before the TPM sees anything, so no dictionary-attack strike.
  Tss2KeyFile absent = *file;
  absent.empty_auth_present = false;
  std::string absent_path = TempDir() + "/auth-absent.pem";
  ASSERT_TRUE(WriteTss2KeyFile(absent_path, absent).ok());
  auto old_file = tpm::OpenKey(ctx_, absent_path);
  ASSERT_TRUE(old_file.ok());
  EXPECT_TRUE((*old_file)->needs_auth());
  EXPECT_TRUE((*old_file)->auth_required_by_file());
  auto no_auth = (*old_file)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(no_auth.ok());
  EXPECT_EQ(no_auth.error().layer(), Layer::kUsage) << no_auth.error().ToString();
  EXPECT_NE(no_auth.error().message().find("key " + absent_path + " needs an auth value"),
            std::string::npos)
      << no_auth.error().ToString();
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before);

  // The file as written (explicit FALSE, ambiguous because of tpm2-tools #3458): without an
  // auth value, empty auth is tried exactly once and the error says so.
  auto reopened = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->needs_auth());
  EXPECT_FALSE((*reopened)->auth_required_by_file());
  auto empty_try = (*reopened)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(empty_try.ok());
  EXPECT_NE(empty_try.error().message().find("empty auth was tried once"), std::string::npos)
      << empty_try.error().ToString();
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
  before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);

  (*reopened)->SetAuth(SecretBytes(AsBytes("wrong horse")));
  auto wrong = (*reopened)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message().find("TPM_RC_AUTH_FAIL"), std::string::npos);
  EXPECT_EQ(wrong.error().message().find("wrong horse"), std::string::npos);
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);  // one try, no retry

  (*reopened)->SetAuth(SecretBytes(AsBytes("correct horse")));
  auto good = (*reopened)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(good.ok()) << good.error().ToString();
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), 0u);
}

TEST_F(KeyFeaturesTest, RejectedAuthValueCostsOneStrikeThenIsRefusedLocally) {
  // A TLS server configured with a wrong pass phrase signs once per handshake: only the first
  // attempt may reach the TPM, or any client could drive the TPM into lockout.
  SecretBytes right(AsBytes("right value"));
  auto created = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, right);
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  std::string path = TempDir() + "/da.pem";
  ASSERT_TRUE((*created)->Save(path).ok());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(key.ok());
  (*key)->SetAuth(SecretBytes(AsBytes("wrong value")));
  Bytes digest = TestDigest(HashAlg::kSha256, "da counter");
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  constexpr int kAttempts = 6;
  for (int i = 0; i < kAttempts; ++i) {
    auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_FALSE(sig.ok());
    const std::string& m = sig.error().message();
    if (i == 0) {
      EXPECT_NE(m.find("TPM_RC_AUTH_FAIL"), std::string::npos) << sig.error().ToString();
    } else {
      EXPECT_NE(m.find("auth value was rejected by the TPM earlier (0x98e, TPM_RC_AUTH_FAIL); not "
                       "retried to protect the dictionary-attack counter; give the correct auth "
                       "value"),
                std::string::npos)
          << sig.error().ToString();
      EXPECT_EQ(sig.error().tss2_rc(), 0u);  // nothing was sent: no response code of its own
    }
  }
  EXPECT_TRUE((*key)->auth_rejected());
  // Threads racing on the rejected key: none reaches the TPM either.
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      if (!(*key)->SignDigest(HashAlg::kSha256, digest).ok()) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(refused.load(), 4);
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1)
      << kAttempts + 4 << " signatures with a wrong auth value";
  // TPM2_Certify's authorization goes through the same check.
  auto auth_session = ctx_->Run([&](ESYS_CONTEXT* esys) -> Result<ESYS_TR> {
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, (*key)->LoadLocked(esys));
    return (*key)->AuthorizeLocked(esys, tr, true);
  });
  ASSERT_FALSE(auth_session.ok());
  EXPECT_NE(auth_session.error().message().find("rejected by the TPM earlier"), std::string::npos);

  // A new auth value gets its one try; the right one signs.
  (*key)->SetAuth(SecretBytes(AsBytes("right value")));
  EXPECT_FALSE((*key)->auth_rejected());
  auto good = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(good.ok()) << good.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *good).ok());
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
}

TEST_F(KeyFeaturesTest, RejectionIsSharedByReloadedKeysAndForkedWorkers) {
  // nginx re-reads its key on reload (a new key object), programs decode the key per
  // connection, and a pre-fork server's workers each sign: one wrong value, one strike in all
  // (tpm/auth_latch.h).
  auto created = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("right")));
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  std::string path = TempDir() + "/shared.pem";
  ASSERT_TRUE((*created)->Save(path).ok());
  Bytes digest = TestDigest(HashAlg::kSha256, "latch");
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);

  auto first = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(first.ok());
  (*first)->SetAuth(SecretBytes(AsBytes("wrong")));
  auto sig = (*first)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(sig.ok());
  EXPECT_NE(sig.error().message().find("TPM_RC_AUTH_FAIL"), std::string::npos);
  EXPECT_NE(sig.error().tss2_rc(), 0u);  // this one was the TPM's answer
  for (int reload = 0; reload < 3; ++reload) {
    auto again = tpm::OpenKey(ctx_, path);
    ASSERT_TRUE(again.ok());
    (*again)->SetAuth(SecretBytes(AsBytes("wrong")));
    auto refused = (*again)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message().find("rejected by the TPM earlier"), std::string::npos)
        << refused.error().ToString();
    EXPECT_EQ(refused.error().tss2_rc(), 0u);
  }
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1) << "reloads";

  // Pre-fork: the master opens the key with another wrong value that was never tried, then
  // forks workers that all sign at once.
  auto master = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(master.ok());
  (*master)->SetAuth(SecretBytes(AsBytes("also wrong")));
  ctx_->Disconnect();
  std::vector<pid_t> workers = testing::ForkWorkers(4, [&] {
    int tpm_answers = 0;
    for (int n = 0; n < 3; ++n) {
      auto s = (*master)->SignDigest(HashAlg::kSha256, digest);
      if (s.ok()) return 20;
      if (s.error().tss2_rc() != 0) ++tpm_answers;
    }
    ctx_->Disconnect();
    return tpm_answers;  // 1 for the worker that asked the TPM, 0 for the others
  });
  int answered = testing::SumOfExitCodes(workers, 1);  // more: signed, or asked the TPM twice
  EXPECT_EQ(answered, 1) << "exactly one worker's attempt reached the TPM";
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 2);
  // The master learns it too, without a TPM command.
  auto in_master = (*master)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(in_master.ok());
  EXPECT_EQ(in_master.error().tss2_rc(), 0u) << in_master.error().ToString();

  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());  // swtpm locks out at 3
  before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  // Threads of one process with their own TPM contexts (not serialised by a context lock),
  // each with its own copy of the key and a third wrong value: one strike.
  {
    std::vector<std::thread> threads;
    std::atomic<int> answered_by_tpm{0};
    std::atomic<int> signed_ok{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        auto ctx = std::make_shared<tpm::TpmContext>(tcti_);
        auto k = tpm::OpenKey(ctx, path);
        if (!k.ok()) return;
        (*k)->SetAuth(SecretBytes(AsBytes("thread wrong")));
        for (int n = 0; n < 3; ++n) {
          auto s = (*k)->SignDigest(HashAlg::kSha256, digest);
          if (s.ok()) ++signed_ok;
          if (!s.ok() && s.error().tss2_rc() != 0) ++answered_by_tpm;
        }
        ctx->Disconnect();
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(signed_ok.load(), 0);
    EXPECT_EQ(answered_by_tpm.load(), 1);
    EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  }

  // The right value still signs, in a reloaded key too.
  auto good = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(good.ok());
  (*good)->SetAuth(SecretBytes(AsBytes("right")));
  auto ok = (*good)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_TRUE(VerifyDigest((*good)->public_key(), HashAlg::kSha256, digest, *ok).ok());
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
}

// The latch's own rules, without a TPM: fingerprints, claims between threads and processes,
// lapse, and a full table.
TEST(AuthLatch, ClaimsRejectionsLapseAndAFullTable) {
  tpm::AuthLatch& latch = tpm::AuthLatch::Global();
  EXPECT_TRUE(latch.shared());
  auto fp = [&](const std::string& object, const std::string& auth) {
    return latch.Of("test", AsBytes(object), AsBytes(auth));
  };
  EXPECT_EQ(fp("k", "a"), fp("k", "a"));
  EXPECT_NE(fp("k", "a"), fp("k", "b"));
  EXPECT_NE(fp("ka", ""), fp("k", "a"));  // length-prefixed fields
  EXPECT_NE(latch.Of("other", AsBytes("k"), AsBytes("a")), fp("k", "a"));

  // A claim held by one thread makes another wait (here: time out); released, it is free.
  auto claimed = fp("claims", "x");
  ASSERT_EQ(latch.BeginFirstTry(claimed, std::chrono::milliseconds(0)),
            tpm::AuthLatch::Claim::kMine);
  EXPECT_EQ(latch.BeginFirstTry(claimed, std::chrono::milliseconds(0)),
            tpm::AuthLatch::Claim::kMine);  // the holder itself
  tpm::AuthLatch::Claim other{};
  std::thread([&] { other = latch.BeginFirstTry(claimed, std::chrono::milliseconds(30)); }).join();
  EXPECT_EQ(other, tpm::AuthLatch::Claim::kTimedOut);
  latch.EndFirstTry(claimed);
  std::thread([&] {
    other = latch.BeginFirstTry(claimed, std::chrono::milliseconds(30));
    latch.EndFirstTry(claimed);
  }).join();
  EXPECT_EQ(other, tpm::AuthLatch::Claim::kMine);

  // A claimant that died mid-try (a forked child that _exits) is taken over.
  auto orphan = fp("orphan", "x");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    latch.BeginFirstTry(orphan, std::chrono::milliseconds(0));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(latch.BeginFirstTry(orphan, std::chrono::milliseconds(0)),
            tpm::AuthLatch::Claim::kMine);
  latch.EndFirstTry(orphan);

  // A rejection recorded in a child is seen by its parent (one mapping for the tree).
  auto in_child = fp("child", "x");
  pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    latch.RecordRejected(in_child, 0x98e);
    _exit(0);
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(latch.Rejected(in_child), 0x98eu);
  EXPECT_EQ(latch.BeginFirstTry(in_child, std::chrono::milliseconds(0)),
            tpm::AuthLatch::Claim::kRejected);

  // A rejection lapses when the TPM has forgiven it.
  auto lapsing = fp("lapsing", "x");
  latch.RecordRejected(lapsing, 0x98e, std::chrono::seconds(1));
  EXPECT_EQ(latch.Rejected(lapsing), 0x98eu);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(latch.Rejected(lapsing), 0u);

  // A full table displaces its oldest rejections, never the newest.
  for (int i = 0; i < tpm::AuthLatch::kSlots + 20; ++i) {
    latch.RecordRejected(fp("full" + std::to_string(i), "x"), 0x98e);
  }
  EXPECT_EQ(latch.Rejected(fp("full0", "x")), 0u);
  EXPECT_EQ(latch.Rejected(fp("full" + std::to_string(tpm::AuthLatch::kSlots + 19), "x")), 0x98eu);
  EXPECT_EQ(latch.Rejected(in_child), 0u) << "older than the last kSlots rejections";
}

TEST_F(KeyFeaturesTest, RejectionLapsesOnceTheTpmHasForgivenTheStrike) {
  // Hostile review: a rejection kept for the life of the process tree refused a value that had
  // become right (auth changed on a persistent key, same Name) until a full restart. It now
  // lapses after the TPM's lockout interval, when the TPM has forgiven the strike: one more try
  // then can never add up to a lockout.
  uint32_t max_tries = TpmProperty(*ctx_, TPM2_PT_MAX_AUTH_FAIL);
  uint32_t interval = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_INTERVAL);
  uint32_t recovery = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_RECOVERY);
  auto set_params = [&](uint32_t tries, uint32_t iv, uint32_t rec) {
    return testing::SetDictionaryAttackParameters(*ctx_, tries, iv, rec);
  };
  ASSERT_TRUE(set_params(10, 2, 10).ok());  // forgive one failure every 2 s
  auto created = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("right")));
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  std::string path = TempDir() + "/lapse.pem";
  ASSERT_TRUE((*created)->Save(path).ok());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(key.ok());
  (*key)->SetAuth(SecretBytes(AsBytes("lapsing wrong")));
  Bytes digest = TestDigest(HashAlg::kSha256, "lapse");
  auto first = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().tss2_rc(), 0u) << first.error().ToString();
  auto refused = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().tss2_rc(), 0u) << refused.error().ToString();
  auto reloaded = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(reloaded.ok());
  (*reloaded)->SetAuth(SecretBytes(AsBytes("lapsing wrong")));
  EXPECT_EQ((*reloaded)->SignDigest(HashAlg::kSha256, digest).error().tss2_rc(), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));
  // Forgiven: the first copy to try gets the one more try; the other is refused again after
  // that answer.
  auto again = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().tss2_rc(), 0u) << "after the interval the TPM is asked once more";
  auto copy = (*reloaded)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(copy.ok());
  EXPECT_EQ(copy.error().tss2_rc(), 0u) << copy.error().ToString();
  EXPECT_LE(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), 2u);
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
  ASSERT_TRUE(set_params(max_tries, interval, recovery).ok());
}

TEST_F(KeyFeaturesTest, ParentWithAnAuthValueCostsOneStrikeAndIsNamed) {
  // A key file whose persistent parent has an auth value: parents are used with an empty auth
  // value, so TPM2_Load fails with TPM_RC_AUTH_FAIL (a strike unless the parent is noDA).
  // Without a latch every signature would load again and strike again.
  const uint32_t kParent = 0x81000102;
  const char kParentAuth[] = "parent-pw";
  auto made = ctx_->Run([&](ESYS_CONTEXT* esys) -> Result<Tss2KeyFile> {
    WIMSE_ASSIGN_OR_RETURN(tpm::TpmHandle srk, ctx_->LoadStoragePrimaryLocked(esys));
    TPM2B_PUBLIC storage = tpm::StoragePrimaryTemplateEccP256();  // restricted decrypt
    storage.publicArea.objectAttributes &= ~TPMA_OBJECT_NODA;     // its failures count
    TPM2B_SENSITIVE_CREATE sensitive{};
    sensitive.sensitive.userAuth.size = sizeof(kParentAuth) - 1;
    std::memcpy(sensitive.sensitive.userAuth.buffer, kParentAuth, sizeof(kParentAuth) - 1);
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    TSS2_RC rc =
        Esys_Create(esys, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                    &storage, &outside, &pcrs, &priv, &pub, nullptr, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("Create (parent)", rc);
    ESYS_TR parent = ESYS_TR_NONE;
    rc = Esys_Load(esys, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub,
                   &parent);
    Esys_Free(priv);
    Esys_Free(pub);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("Load (parent)", rc);
    ESYS_TR persistent = ESYS_TR_NONE;
    rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, kParent, &persistent);
    if (rc != TSS2_RC_SUCCESS) {
      Esys_FlushContext(esys, parent);
      return tpm::TpmError("EvictControl (parent)", rc);
    }
    TPM2B_AUTH auth{};
    auth.size = sizeof(kParentAuth) - 1;
    std::memcpy(auth.buffer, kParentAuth, auth.size);
    Esys_TR_SetAuth(esys, parent, &auth);
    WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC tmpl, tpm::WorkloadKeyTemplate(KeyAlg::kEcP256));
    auto file = testing::CreateKeyFileLocked(esys, parent, tmpl, kParent);
    Esys_FlushContext(esys, parent);
    Esys_TR_Close(esys, &persistent);
    return file;
  });
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  std::string path = TempDir() + "/under-authed-parent.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, *made).ok());
  Bytes digest = TestDigest(HashAlg::kSha256, "parent auth");
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  for (int reload = 0; reload < 3; ++reload) {
    auto key = tpm::OpenKey(ctx_, path);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    for (int n = 0; n < 2; ++n) {
      auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
      ASSERT_FALSE(sig.ok());
      const std::string& m = sig.error().message();
      EXPECT_NE(m.find("the parent 0x81000102 refused an empty auth value"), std::string::npos)
          << sig.error().ToString();
      EXPECT_NE(m.find("loads keys only under parents without one"), std::string::npos) << m;
      // Only the very first attempt was a TPM answer.
      EXPECT_EQ(sig.error().tss2_rc() != 0, reload == 0 && n == 0) << sig.error().ToString();
    }
  }
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  ASSERT_TRUE(tpm::WorkloadKey::EvictPersistent(ctx_, kParent, /*any_object=*/true).ok());
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
}

TEST_F(KeyFeaturesTest, EmptyAuthRejectedForAnExplicitFalseFileIsTriedOnce) {
  // emptyAuth FALSE on a key that does have an auth value: empty auth is tried once (the
  // CLI's rule for tpm2-tools 5.4 files), then refused locally until an auth value is given.
  auto created = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("pw")));
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  Tss2KeyFile file = (*created)->key_file();
  file.empty_auth = false;
  file.empty_auth_present = true;
  std::string path = TempDir() + "/false.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, file).ok());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(key.ok());
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  Bytes digest = TestDigest(HashAlg::kSha256, "explicit false");
  auto first = (*key)->SignDigest(HashAlg::kSha256, digest);  // empty auth, tried once
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().message().find("empty auth was tried once"), std::string::npos)
      << first.error().ToString();
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  }
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before + 1);
  (*key)->SetAuth(SecretBytes(AsBytes("pw")));
  EXPECT_TRUE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());

  // The same file for a key without auth: the try signs, nothing counted.
  auto plain = tpm::WorkloadKey::Create(ctx_, KeyAlg::kRsa2048);
  ASSERT_TRUE(plain.ok());
  Tss2KeyFile pf = (*plain)->key_file();
  pf.empty_auth = false;
  pf.empty_auth_present = true;
  auto pkey = tpm::WorkloadKey::FromKeyFile(ctx_, pf);
  ASSERT_TRUE(pkey.ok());
  auto ok = (*pkey)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_TRUE(VerifyDigest((*pkey)->public_key(), HashAlg::kSha256, digest, *ok).ok());
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), 0u);
}

TEST_F(KeyFeaturesTest, OverLongAuthValueIsRefusedBeforeTheTpm) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("short")));
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  (*key)->SetAuth(SecretBytes(Bytes(100, 'a')));
  Bytes digest = TestDigest(HashAlg::kSha256, "long auth");
  auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().layer(), Layer::kUsage) << sig.error().ToString();
  EXPECT_NE(sig.error().message().find("the auth value is 100 bytes; the TPM accepts at most 32"),
            std::string::npos)
      << sig.error().ToString();
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before);
  EXPECT_FALSE((*key)->auth_rejected());  // refused here, not by the TPM
  // 32 bytes is the limit, not an error.
  auto create32 = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(Bytes(32, 'b')));
  ASSERT_TRUE(create32.ok()) << create32.error().ToString();
  EXPECT_TRUE((*create32)->SignDigest(HashAlg::kSha256, digest).ok());
  auto create33 = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(Bytes(33, 'b')));
  ASSERT_FALSE(create33.ok());
  EXPECT_NE(
      create33.error().message().find("the auth value is 33 bytes; the TPM accepts at most 32"),
      std::string::npos);
}

TEST_F(KeyFeaturesTest, PolicyOnlyKeyIsRefusedAtLoad) {
  Tss2KeyFile file = testing::PolicyOnlyKeyFile(*ctx_);
  ASSERT_FALSE(file.public_blob.empty());
  std::string path = TempDir() + "/policy-only.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, file).ok());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_FALSE(key.ok()) << "loaded; its signature would fail with TPM_RC_AUTH_UNAVAILABLE";
  EXPECT_EQ(key.error().layer(), Layer::kPolicy);
  EXPECT_NE(key.error().message().find(
                "key requires a policy session (userWithAuth clear); not supported"),
            std::string::npos)
      << key.error().ToString();
  EXPECT_NE(key.error().message().find(path), std::string::npos);
}

TEST_F(KeyFeaturesTest, ExhaustedDictionaryAttackCounterIsALockoutError) {
  uint32_t max_tries = TpmProperty(*ctx_, TPM2_PT_MAX_AUTH_FAIL);
  uint32_t interval = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_INTERVAL);
  uint32_t recovery = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_RECOVERY);
  auto set_params = [&](uint32_t tries, uint32_t iv, uint32_t rec) {
    return testing::SetDictionaryAttackParameters(*ctx_, tries, iv, rec);
  };
  ASSERT_TRUE(set_params(2, 1000, 1000).ok());
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("right")));
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes digest = TestDigest(HashAlg::kSha256, "lockout");
  for (int i = 0; i < 2; ++i) {
    // A rejected value is not sent again: each strike needs a new SetAuth.
    (*key)->SetAuth(SecretBytes(AsBytes(i == 0 ? "wrong" : "wrong again")));
    auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_FALSE(sig.ok());
  }
  (*key)->SetAuth(SecretBytes(AsBytes("right")));  // even the right value is refused now
  auto locked = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(locked.ok());
  EXPECT_NE(locked.error().message().find("dictionary-attack lockout (TPM_RC_LOCKOUT)"),
            std::string::npos)
      << locked.error().ToString();
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
  ASSERT_TRUE(set_params(max_tries, interval, recovery).ok());
  auto after = (*key)->SignDigest(HashAlg::kSha256, digest);
  EXPECT_TRUE(after.ok()) << after.error().ToString();
}

TEST_F(KeyFeaturesTest, AuthValueNeverCrossesTheRecordedBusInClear) {
  size_t pos = tcti_.find("port=");
  ASSERT_NE(pos, std::string::npos) << tcti_;
  int port = std::stoi(tcti_.substr(pos + 5));
  uint8_t rnd[8];
  ASSERT_EQ(RAND_bytes(rnd, sizeof(rnd)), 1);
  const std::string secret = "bus-probe-" + HexEncode(rnd);
  Bytes digest = TestDigest(HashAlg::kSha256, "bus");

  ctx_->Disconnect();  // swtpm serves one connection at a time
  BusRecorder recorder(port);
  Bytes secure_capture;
  {
    auto bus_ctx = std::make_shared<tpm::TpmContext>(recorder.tcti());
    // Create (auth value inside TPM2B_SENSITIVE_CREATE) and two signatures, all in the salted,
    // encrypted session.
    auto key = tpm::WorkloadKey::Create(bus_ctx, KeyAlg::kEcP256, SecretBytes(AsBytes(secret)));
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    for (int i = 0; i < 2; ++i) {
      auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
    }
    secure_capture = recorder.captured();
    // Baseline: the same signature with a password session puts the auth value on the bus.
    auto baseline = bus_ctx->Run([&](ESYS_CONTEXT* esys) -> Status {
      WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, (*key)->LoadLocked(esys));
      TPM2B_AUTH a{};
      a.size = static_cast<UINT16>(secret.size());
      std::copy(secret.begin(), secret.end(), a.buffer);
      Esys_TR_SetAuth(esys, tr, &a);
      TPM2B_DIGEST d{};
      d.size = 32;
      std::copy(digest.begin(), digest.end(), d.buffer);
      TPMT_SIG_SCHEME scheme{};
      scheme.scheme = TPM2_ALG_ECDSA;
      scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
      TPMT_TK_HASHCHECK ticket{};
      ticket.tag = TPM2_ST_HASHCHECK;
      ticket.hierarchy = TPM2_RH_NULL;
      TPMT_SIGNATURE* sig = nullptr;
      TSS2_RC rc = Esys_Sign(esys, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d, &scheme,
                             &ticket, &sig);
      Esys_Free(sig);
      TPM2B_AUTH empty{};
      Esys_TR_SetAuth(esys, tr, &empty);
      if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("baseline Sign", rc);
      return OkStatus();
    });
    ASSERT_TRUE(baseline.ok()) << baseline.error().ToString();
    bus_ctx->FlushCache();
  }  // bus_ctx disconnects: swtpm can serve the fixture's connection again
  Bytes all = recorder.captured();
  EXPECT_GT(secure_capture.size(), 500u);  // the relay really saw the traffic
  EXPECT_FALSE(Contains(secure_capture, secret)) << "auth value seen in clear on the bus";
  EXPECT_TRUE(Contains(all, secret)) << "baseline: a password session shows the auth value";
  // The digest is TPM2_Sign's first parameter: encrypted (AES-128-CFB) in the salted session.
  EXPECT_FALSE(Contains(secure_capture, digest)) << "digest seen in clear on the bus";
  EXPECT_TRUE(Contains(all, digest)) << "baseline: a password session shows the digest";

  // Encryption alone does not prove salting (an unsalted session's key derives from nonces that
  // cross the bus). Every TPM2_StartAuthSession on the bus names a tpmKey and carries an
  // encrypted salt, and asks for an HMAC session with AES-128-CFB.
  auto be16 = [&](size_t at) {
    return static_cast<uint32_t>(secure_capture[at] << 8 | secure_capture[at + 1]);
  };
  auto be32 = [&](size_t at) { return be16(at) << 16 | be16(at + 2); };
  int sessions = 0;
  for (size_t at = 0; at + 10 <= secure_capture.size();) {
    uint32_t size = be32(at + 2);
    ASSERT_GE(size, 10u) << "capture out of step at byte " << at;
    ASSERT_LE(at + size, secure_capture.size());
    // Commands and responses alternate; a response's third field is a response code, which
    // is never 0x176 for a well-formed stream of ours (TPM_RC values are 0 or >= 0x100 with
    // format bits), so the command code test alone picks StartAuthSession commands.
    if (be32(at + 6) == TPM2_CC_StartAuthSession && be16(at) == TPM2_ST_NO_SESSIONS) {
      ++sessions;
      size_t p = at + 10;
      uint32_t tpm_key = be32(p);
      p += 8;            // tpmKey, bind
      p += 2 + be16(p);  // nonceCaller
      uint32_t salt_size = be16(p);
      p += 2 + salt_size;
      uint8_t type = secure_capture[p];
      uint32_t sym_alg = be16(p + 1);
      uint32_t sym_bits = be16(p + 3);
      uint32_t sym_mode = be16(p + 5);
      EXPECT_NE(tpm_key, static_cast<uint32_t>(TPM2_RH_NULL)) << "unsalted session (tpmKey NULL)";
      EXPECT_GE(salt_size, 65u) << "no encrypted salt (an ECC point: at least 2 + 2 * 32 bytes)";
      EXPECT_EQ(type, TPM2_SE_HMAC);
      EXPECT_EQ(sym_alg, static_cast<uint32_t>(TPM2_ALG_AES));
      EXPECT_EQ(sym_bits, 128u);
      EXPECT_EQ(sym_mode, static_cast<uint32_t>(TPM2_ALG_CFB));
    }
    at += size;
  }
  EXPECT_GE(sessions, 1) << "no TPM2_StartAuthSession on the bus";
}

TEST_F(KeyFeaturesTest, PersistentKeyByHandleAndEvict) {
  const uint32_t kHandle = 0x81000100;
  SecretBytes auth(AsBytes("persist-auth"));
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, auth);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  auto persistent = (*key)->Persist(kHandle);
  ASSERT_TRUE(persistent.ok()) << persistent.error().ToString();
  EXPECT_EQ((*persistent)->persistent_handle(), kHandle);
  auto again = (*key)->Persist(kHandle);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message().find("already in use"), std::string::npos)
      << again.error().ToString();

  auto by_ref = tpm::OpenKey(ctx_, "handle:0x81000100");
  ASSERT_TRUE(by_ref.ok()) << by_ref.error().ToString();
  EXPECT_EQ((*by_ref)->name(), (*key)->name());
  EXPECT_EQ((*by_ref)->label(), "handle:0x81000100");
  (*by_ref)->SetAuth(SecretBytes(AsBytes("persist-auth")));
  Bytes digest = TestDigest(HashAlg::kSha256, "persistent");
  auto sig = (*by_ref)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *sig).ok());

  ASSERT_TRUE(tpm::WorkloadKey::EvictPersistent(ctx_, kHandle).ok());
  auto gone = tpm::OpenKey(ctx_, "handle:0x81000100");
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.error().message().find("no persistent object at handle 0x81000100"),
            std::string::npos)
      << gone.error().ToString();
  auto evict_gone = tpm::WorkloadKey::EvictPersistent(ctx_, kHandle);
  ASSERT_FALSE(evict_gone.ok());
  EXPECT_NE(evict_gone.error().message().find("0x81000100"), std::string::npos);
}

TEST_F(KeyFeaturesTest, KeyFileWithPersistentParentLoads) {
  const uint32_t kParent = 0x81000101;
  // Make the H-2 storage primary persistent and create a child under it by hand.
  auto made = ctx_->Run([&](ESYS_CONTEXT* esys) -> Result<Tss2KeyFile> {
    WIMSE_ASSIGN_OR_RETURN(tpm::TpmHandle srk, ctx_->LoadStoragePrimaryLocked(esys));
    ESYS_TR persistent = ESYS_TR_NONE;
    TSS2_RC rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, srk.get(), ESYS_TR_PASSWORD,
                                   ESYS_TR_NONE, ESYS_TR_NONE, kParent, &persistent);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("EvictControl", rc);
    Esys_TR_Close(esys, &persistent);
    WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC tmpl, tpm::WorkloadKeyTemplate(KeyAlg::kEcP384));
    return testing::CreateKeyFileLocked(esys, srk.get(), tmpl, kParent);
  });
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  std::string path = TempDir() + "/child.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, *made).ok());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  ctx_->FlushCache();
  Bytes digest = TestDigest(HashAlg::kSha384, "persistent parent");
  auto sig = (*key)->SignDigest(HashAlg::kSha384, digest);
  EXPECT_TRUE(sig.ok()) << sig.error().ToString();
  if (sig.ok()) {
    EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha384, digest, *sig).ok());
  }
  ctx_->FlushCache();
  // evict removes workload keys only: a storage parent (like an EK or SRK) needs any_object.
  Status refused = tpm::WorkloadKey::EvictPersistent(ctx_, kParent);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("holds a restricted decryption key"), std::string::npos)
      << refused.error().ToString();
  ASSERT_TRUE(tpm::WorkloadKey::EvictPersistent(ctx_, kParent, /*any_object=*/true).ok());
  // Without its parent the key is one clear error naming the parent handle.
  auto orphan = (*key)->SignDigest(HashAlg::kSha384, digest);
  ASSERT_FALSE(orphan.ok());
  EXPECT_NE(orphan.error().message().find("0x81000101"), std::string::npos)
      << orphan.error().ToString();
}

TEST_F(KeyFeaturesTest, InvertedEmptyAuthFlagFromTpm2ToolsStillLoads) {
  // tpm2_encodeobject 5.4 writes emptyAuth FALSE for keys without auth (tpm2-tools #3458).
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok());
  Tss2KeyFile file = (*key)->key_file();
  file.empty_auth = false;
  file.empty_auth_present = true;  // an explicit FALSE, as tpm2_encodeobject 5.4 writes it
  std::string path = TempDir() + "/inverted.pem";
  ASSERT_TRUE(WriteTss2KeyFile(path, file).ok());
  auto opened = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(opened.ok());
  EXPECT_TRUE((*opened)->needs_auth());
  uint32_t before = TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER);
  Bytes digest = TestDigest(HashAlg::kSha256, "inverted");
  auto sig = (*opened)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().ToString();
  EXPECT_EQ(TpmProperty(*ctx_, TPM2_PT_LOCKOUT_COUNTER), before);
}

TEST_F(KeyFeaturesTest, SlotPressureWithAuthAndPlainKeysIsTransparent) {
  // More keys than the 3 object slots, with and without auth (sessions), interleaved.
  std::vector<std::shared_ptr<tpm::WorkloadKey>> keys;
  for (int i = 0; i < 5; ++i) {
    auto k = (i % 2 == 0)
                 ? tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256,
                                            SecretBytes(AsBytes("slot" + std::to_string(i))))
                 : tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    keys.push_back(*k);
  }
  Bytes digest = TestDigest(HashAlg::kSha256, "slots");
  for (int round = 0; round < 3; ++round) {
    for (auto& k : keys) {
      auto sig = k->SignDigest(HashAlg::kSha256, digest);
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
      EXPECT_TRUE(VerifyDigest(k->public_key(), HashAlg::kSha256, digest, *sig).ok());
    }
  }
}

// Several contexts of one process (or the provider module and the application, which each have
// their own copy of the library), each keeping a key loaded: on a direct swtpm TCTI with 3
// object slots, the second and third context used to fail with TPM_RC_OBJECT_MEMORY. A context
// that goes idle now hands its slots back before its connection closes.
TEST_F(KeyFeaturesTest, SlotPressureAcrossContextsOfOneProcessIsTransparent) {
  constexpr int kContexts = 5;
  std::vector<std::shared_ptr<tpm::TpmContext>> contexts;
  std::vector<std::shared_ptr<tpm::WorkloadKey>> keys;
  for (int i = 0; i < kContexts; ++i) {
    contexts.push_back(std::make_shared<tpm::TpmContext>(tcti_));
    // Odd ones carry an auth value: a salted session per context as well.
    auto k = (i % 2 == 1)
                 ? tpm::WorkloadKey::Create(contexts.back(), KeyAlg::kEcP256,
                                            SecretBytes(AsBytes("ctx" + std::to_string(i))))
                 : tpm::WorkloadKey::Create(contexts.back(), KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << "context " << i << ": " << k.error().ToString();
    keys.push_back(*k);
  }
  Bytes digest = TestDigest(HashAlg::kSha256, "contexts");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kContexts; ++i) {
      auto sig = keys[i]->SignDigest(HashAlg::kSha256, digest);
      ASSERT_TRUE(sig.ok()) << "context " << i << ", round " << round << ": "
                            << sig.error().ToString();
      EXPECT_TRUE(VerifyDigest(keys[i]->public_key(), HashAlg::kSha256, digest, *sig).ok());
    }
  }
  uint64_t releases = 0;
  for (auto& c : contexts) releases += c->idle_releases();
  EXPECT_GT(releases, 0u) << "no context released its slots: the test did not exercise pressure";
  keys.clear();
  for (auto& c : contexts) c->Disconnect();
}

// A key released while the connection was idle comes back with one TPM2_ContextLoad of the
// context saved at release (not SRK load + TPM2_Load + flush), and still signs as itself.
TEST_F(KeyFeaturesTest, KeyReleasedWhenIdleComesBackFromItsSavedContext) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes digest = TestDigest(HashAlg::kSha256, "saved context");
  ASSERT_TRUE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  uint64_t releases = ctx_->idle_releases();
  for (int i = 0; i < 200 && ctx_->idle_releases() == releases; ++i) usleep(5000);
  ASSERT_EQ(ctx_->idle_releases(), releases + 1) << "the idle connection released nothing";
  uint64_t before = ctx_->transport_stats().commands;
  auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(sig.ok()) << sig.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *sig).ok());
  EXPECT_EQ(ctx_->transport_stats().commands - before, 2u) << "TPM2_ContextLoad + TPM2_Sign";
}

// Hostile review: the idle thread closed the connection in the middle of an operation that
// paused between two commands (its release could not run, the context being busy), so another
// client got the TPM while this one's objects were loaded. A busy context keeps its connection.
TEST_F(KeyFeaturesTest, ConnectionStaysOpenWhileAnOperationPausesBetweenCommands) {
  ctx_->Disconnect();
  auto a = std::make_shared<tpm::TpmContext>(tcti_);
  ASSERT_TRUE(a->Connect().ok());
  uint64_t connections = 0;
  uint64_t closes = 0;
  Status s = a->Run([&](ESYS_CONTEXT* esys) -> Status {
    TPM2B_DIGEST* r = nullptr;
    TSS2_RC rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &r);
    Esys_Free(r);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetRandom", rc);
    TSS2_TCTI_CONTEXT* tcti = nullptr;
    Esys_GetTcti(esys, &tcti);
    tpm::TransportStats before = tpm::GetTransportStats(tcti);
    usleep(40000);  // eight idle periods with the context lock held
    rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &r);
    Esys_Free(r);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetRandom", rc);
    tpm::TransportStats after = tpm::GetTransportStats(tcti);
    connections = after.connections - before.connections;
    closes = after.idle_closes - before.idle_closes;
    return OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(connections, 0u) << "reconnected in the middle of the operation";
  EXPECT_EQ(closes, 0u) << "closed in the middle of the operation";
  a->Disconnect();
}

// Hostile review: a context trusted the ESYS_TR of a persistent handle across connections. In
// between, the key was evicted and another one made persistent at the same handle; the next
// password-session TPM2_Sign signed with that other key. Now the handle is re-read on a new
// connection and its Name compared: a clear error, never a signature by the other key.
TEST_F(KeyFeaturesTest, PersistentHandleReplacedBetweenConnectionsIsRefused) {
  const uint32_t kHandle = 0x81000110;
  auto first = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  auto second = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE((*first)->Persist(kHandle).ok());
  ctx_->Disconnect();
  Bytes digest = TestDigest(HashAlg::kSha256, "replaced");
  {
    auto other = std::make_shared<tpm::TpmContext>(tcti_);
    auto by_handle = tpm::OpenKey(other, "handle:0x81000110");
    ASSERT_TRUE(by_handle.ok()) << by_handle.error().ToString();
    auto sig = (*by_handle)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_TRUE(sig.ok()) << sig.error().ToString();
    // Let its connection go idle and close, then replace the key behind the handle.
    for (int i = 0; i < 200 && other->transport_stats().idle_closes == 0; ++i) usleep(5000);
    ASSERT_TRUE(tpm::WorkloadKey::EvictPersistent(ctx_, kHandle).ok());
    ASSERT_TRUE((*second)->Persist(kHandle).ok());
    ctx_->Disconnect();
    auto again = (*by_handle)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_FALSE(again.ok()) << "signed with whatever is at the handle now";
    EXPECT_NE(again.error().message().find("is no longer this key"), std::string::npos)
        << again.error().ToString();
    other->Disconnect();
  }
  ASSERT_TRUE(tpm::WorkloadKey::EvictPersistent(ctx_, kHandle).ok());
}

// With WIMSE_SWTPM_IDLE_MS=0 (a connection per command, no idle thread) a context kept its key
// loaded between operations; a client that flushed every transient object and loaded its own
// key at the same handle made the next signature one by that key. Now each operation hands its
// objects back at its end and the next one restores its own key from the saved context.
TEST_F(KeyFeaturesTest, ConnectionPerCommandNeverSignsWithAnotherClientsObject) {
  auto mine = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(mine.ok());
  std::string dir = TempDir();
  ASSERT_TRUE((*mine)->Save(dir + "/mine.pem").ok());
  ctx_->FlushCache();
  setenv("WIMSE_SWTPM_IDLE_MS", "0", 1);
  auto a = std::make_shared<tpm::TpmContext>(tcti_);
  ASSERT_TRUE(a->Connect().ok());  // the transport reads the variable when it is opened
  unsetenv("WIMSE_SWTPM_IDLE_MS");
  auto key = tpm::OpenKey(a, dir + "/mine.pem");
  ASSERT_TRUE(key.ok());
  Bytes digest = TestDigest(HashAlg::kSha256, "per command");
  // Another client (tpm2_flushcontext -t, then its own keys): every transient object flushed,
  // then unrestricted signing primaries in the first slots, where our key was.
  auto other_client = [&](std::vector<ESYS_TR>* loaded) {
    return ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
      TPMS_CAPABILITY_DATA* caps = nullptr;
      TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                      TPM2_CAP_HANDLES, TPM2_TRANSIENT_FIRST, 16, nullptr, &caps);
      if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetCapability", rc);
      for (uint32_t i = 0; i < caps->data.handles.count; ++i) {
        ESYS_TR tr = ESYS_TR_NONE;
        if (Esys_TR_FromTPMPublic(esys, caps->data.handles.handle[i], ESYS_TR_NONE, ESYS_TR_NONE,
                                  ESYS_TR_NONE, &tr) == TSS2_RC_SUCCESS) {
          Esys_FlushContext(esys, tr);
        }
      }
      Esys_Free(caps);
      for (uint8_t n = 0; n < 2; ++n) {
        TPM2B_PUBLIC in{};
        in.publicArea.type = TPM2_ALG_ECC;
        in.publicArea.nameAlg = TPM2_ALG_SHA256;
        in.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                         TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                         TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;
        in.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        in.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        in.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        in.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        in.publicArea.unique.ecc.x.size = 1;
        in.publicArea.unique.ecc.x.buffer[0] = n;
        TPM2B_SENSITIVE_CREATE sensitive{};
        TPM2B_DATA outside{};
        TPML_PCR_SELECTION pcrs{};
        ESYS_TR tr = ESYS_TR_NONE;
        rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &sensitive, &in, &outside, &pcrs, &tr, nullptr,
                                nullptr, nullptr, nullptr);
        if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("CreatePrimary (signing)", rc);
        loaded->push_back(tr);
      }
      return OkStatus();
    });
  };
  for (int round = 0; round < 3; ++round) {
    auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
    std::vector<ESYS_TR> theirs;
    if (round > 0) {
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
      EXPECT_TRUE(VerifyDigest((*mine)->public_key(), HashAlg::kSha256, digest, *sig).ok())
          << "round " << round << ": not a signature by our key";
    } else {
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
    }
    ASSERT_TRUE(other_client(&theirs).ok());
    auto next = (*key)->SignDigest(HashAlg::kSha256, digest);
    ASSERT_TRUE(next.ok()) << next.error().ToString();
    EXPECT_TRUE(VerifyDigest((*mine)->public_key(), HashAlg::kSha256, digest, *next).ok())
        << "round " << round << ": signed with another client's object";
    ASSERT_TRUE(ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
                      for (ESYS_TR tr : theirs) Esys_FlushContext(esys, tr);
                      return OkStatus();
                    })
                    .ok());
  }
  key->reset();
  a->Disconnect();
}

// A response that does not arrive in time leaves ESAPI in an error state. The context used to
// keep that ESYS context, and every later operation failed with 0x70007 (bad sequence). Now
// the failed operation reports the timeout and the next one starts afresh.
TEST_F(KeyFeaturesTest, ResponseTimeoutIsReportedAndTheNextOperationRecovers) {
  const char* state = std::getenv("WIMSE_TPM_STATE");
  ASSERT_NE(state, nullptr);
  std::ifstream pid_file(std::string(state) + "/swtpm.pid");
  pid_t swtpm = 0;
  pid_file >> swtpm;
  ASSERT_GT(swtpm, 0);
  auto created = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(created.ok());
  ctx_->Disconnect();
  setenv("WIMSE_SWTPM_TIMEOUT_MS", "300", 1);
  auto a = std::make_shared<tpm::TpmContext>(tcti_);
  ASSERT_TRUE(a->Connect().ok());
  unsetenv("WIMSE_SWTPM_TIMEOUT_MS");
  auto key = tpm::WorkloadKey::FromKeyFile(a, (*created)->key_file());
  ASSERT_TRUE(key.ok());
  Bytes digest = TestDigest(HashAlg::kSha256, "timeout");
  ASSERT_TRUE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  ASSERT_EQ(kill(swtpm, SIGSTOP), 0);
  auto stalled = (*key)->SignDigest(HashAlg::kSha256, digest);
  kill(swtpm, SIGCONT);
  ASSERT_FALSE(stalled.ok());
  EXPECT_EQ(stalled.error().layer(), Layer::kTcti) << stalled.error().ToString();
  usleep(200000);  // swtpm runs the abandoned command now
  auto after = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(after.ok()) << after.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *after).ok());
  key->reset();
  a->Disconnect();
  // The abandoned command may have left its object loaded (swtpm ran it after we gave up):
  // that one is not ours to know about; clear it so the fixture's leak check stays meaningful.
  ASSERT_TRUE(ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
                    TPMS_CAPABILITY_DATA* caps = nullptr;
                    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                    TPM2_CAP_HANDLES, TPM2_TRANSIENT_FIRST, 16,
                                                    nullptr, &caps);
                    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetCapability", rc);
                    for (uint32_t i = 0; i < caps->data.handles.count; ++i) {
                      ESYS_TR tr = ESYS_TR_NONE;
                      if (Esys_TR_FromTPMPublic(esys, caps->data.handles.handle[i], ESYS_TR_NONE,
                                                ESYS_TR_NONE, ESYS_TR_NONE,
                                                &tr) == TSS2_RC_SUCCESS) {
                        Esys_FlushContext(esys, tr);
                      }
                    }
                    Esys_Free(caps);
                    return OkStatus();
                  })
                  .ok());
}

// The same across processes sharing one swtpm: each child loads its own key and signs in
// bursts interleaved with the others; every signature verifies and nothing is left loaded.
TEST_F(KeyFeaturesTest, SlotPressureAcrossProcessesIsTransparent) {
  constexpr int kChildren = 4;
  constexpr int kSignatures = 8;
  std::string dir = TempDir();
  std::vector<std::string> paths;
  for (int i = 0; i < kChildren; ++i) {
    auto k = (i % 2 == 1)
                 ? tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256,
                                            SecretBytes(AsBytes("proc" + std::to_string(i))))
                 : tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    paths.push_back(dir + "/k" + std::to_string(i) + ".pem");
    ASSERT_TRUE((*k)->Save(paths.back()).ok());
  }
  ctx_->Disconnect();  // the children get the TPM
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(60);
      auto ctx = std::make_shared<tpm::TpmContext>(tcti_);
      auto key = tpm::WorkloadKey::Open(ctx, paths[i]);
      if (!key.ok()) _exit(10);
      if (i % 2 == 1) (*key)->SetAuth(SecretBytes(AsBytes("proc" + std::to_string(i))));
      Bytes digest = TestDigest(HashAlg::kSha256, "processes");
      for (int n = 0; n < kSignatures; ++n) {
        auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
        if (!sig.ok()) {
          std::fprintf(stderr, "child %d signature %d: %s\n", i, n, sig.error().ToString().c_str());
          _exit(11);
        }
        if (!VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *sig).ok()) _exit(12);
        usleep(12000);  // longer than the idle period: the others get their turn
      }
      ctx->Disconnect();
      _exit(0);
    }
    children.push_back(pid);
  }
  for (int i = 0; i < kChildren; ++i) {
    int status = 0;
    ASSERT_EQ(waitpid(children[i], &status, 0), children[i]);
    ASSERT_TRUE(WIFEXITED(status)) << "child " << i << " was killed (hung until its alarm?)";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child " << i;
  }
}

// Threads × keys × sessions at once: 6 threads share 4 keys (two with auth values, so the
// salted session is started, used and dropped as keys are evicted) through one context; the
// cache holds one key, so almost every signature evicts another thread's key. Every signature
// must verify under the key it was asked of.
TEST_F(KeyFeaturesTest, ThreadsSigningWithSeveralKeysAndAuthValues) {
  std::vector<std::shared_ptr<tpm::WorkloadKey>> keys;
  for (int i = 0; i < 4; ++i) {
    auto k = (i % 2 == 1)
                 ? tpm::WorkloadKey::Create(ctx_, i == 1 ? KeyAlg::kEcP256 : KeyAlg::kEcP384,
                                            SecretBytes(AsBytes("thr" + std::to_string(i))))
                 : tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    keys.push_back(*k);
  }
  std::atomic<int> valid{0};
  std::atomic<int> failed{0};
  std::mutex first_error_mu;
  std::string first_error;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 30; ++n) {
        auto& key = keys[(t + n) % keys.size()];
        HashAlg hash = key->alg() == KeyAlg::kEcP384 ? HashAlg::kSha384 : HashAlg::kSha256;
        std::string msg = "thread " + std::to_string(t) + " sig " + std::to_string(n);
        Bytes digest = TestDigest(hash, msg.c_str());
        auto sig = key->SignDigest(hash, digest);
        if (!sig.ok()) {
          ++failed;
          std::lock_guard<std::mutex> lock(first_error_mu);
          if (first_error.empty()) first_error = sig.error().ToString();
          continue;
        }
        if (VerifyDigest(key->public_key(), hash, digest, *sig).ok()) ++valid;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0) << first_error;
  EXPECT_EQ(valid.load(), 6 * 30);
}

TEST_F(KeyFeaturesTest, FullTpmSaysWhoseObjectsFillIt) {
  // Helper-1 trial: a killed process left an object in a TPM without a resource manager and
  // later commands failed with a bare 0x902. The error now counts the foreign objects and says
  // how to clear them; nothing of theirs is flushed by us.
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  ctx_->FlushCache();
  std::vector<ESYS_TR> foreign;
  Status filled = ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
    TPM2B_PUBLIC in_public = tpm::StoragePrimaryTemplateEccP256();
    for (int i = 0; i < 3; ++i) {
      TPM2B_SENSITIVE_CREATE sensitive{};
      TPM2B_DATA outside{};
      TPML_PCR_SELECTION pcrs{};
      ESYS_TR tr = ESYS_TR_NONE;
      TSS2_RC rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                      ESYS_TR_NONE, &sensitive, &in_public, &outside, &pcrs, &tr,
                                      nullptr, nullptr, nullptr, nullptr);
      if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("CreatePrimary", rc);
      foreign.push_back(tr);
    }
    return OkStatus();
  });
  ASSERT_TRUE(filled.ok()) << filled.error().ToString();
  Bytes digest = TestDigest(HashAlg::kSha256, "full");
  auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(sig.ok());
  EXPECT_NE(sig.error().message().find("no free object slot in the TPM (3 transient objects are "
                                       "loaded, 3 of them not by this context"),
            std::string::npos)
      << sig.error().ToString();
  EXPECT_NE(sig.error().message().find("tpm2_flushcontext -t"), std::string::npos);
  ASSERT_TRUE(ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
                    for (ESYS_TR tr : foreign) Esys_FlushContext(esys, tr);
                    return OkStatus();
                  })
                  .ok());
  auto after = (*key)->SignDigest(HashAlg::kSha256, digest);
  EXPECT_TRUE(after.ok()) << after.error().ToString();
}

TEST_F(KeyFeaturesTest, BadInputIsASpecificError) {
  std::string dir = TempDir();
  // A handle that does not exist.
  auto missing = tpm::OpenKey(ctx_, "handle:0x81000fff");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("no persistent object at handle 0x81000fff"),
            std::string::npos)
      << missing.error().ToString();
  // A malformed handle URI is not taken as a path.
  auto malformed = tpm::OpenKey(ctx_, "handle:0x40000001");
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().layer(), Layer::kUsage);
  // A truncated TSS2 file.
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(key.ok());
  auto der = EncodeTss2KeyDer((*key)->key_file());
  ASSERT_TRUE(der.ok());
  std::string path = dir + "/truncated.der";
  ASSERT_TRUE(WriteFileAtomic(path, ByteView(der->data(), der->size() - 7)).ok());
  auto truncated = tpm::OpenKey(ctx_, path);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().layer(), Layer::kParse);
  EXPECT_NE(truncated.error().message().find(path), std::string::npos);
}

TEST_F(KeyFeaturesTest, KeyFileFromAnotherTpmIsRefusedClearly) {
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  ASSERT_NE(root, nullptr);
  std::string dir = TempDir();
  std::string other_tcti =
      wimse::testing::Shell(std::string(root) + "/ci/swtpm start " + dir + "/other");
  ASSERT_EQ(other_tcti.rfind("swtpm:", 0), 0u) << "second swtpm did not start: " << other_tcti;
  std::string path = dir + "/other.pem";
  {
    auto other = std::make_shared<tpm::TpmContext>(other_tcti);
    auto k = tpm::WorkloadKey::Create(other, KeyAlg::kEcP256);
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    ASSERT_TRUE((*k)->Save(path).ok());
    other->FlushCache();
  }
  std::system((std::string(root) + "/ci/swtpm stop " + dir + "/other >/dev/null 2>&1").c_str());
  auto key = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(key.ok());  // parsing needs no TPM
  auto sig = (*key)->SignDigest(HashAlg::kSha256, TestDigest(HashAlg::kSha256, "other"));
  ASSERT_FALSE(sig.ok());
  EXPECT_NE(sig.error().message().find("does not belong to this TPM"), std::string::npos)
      << sig.error().ToString();
}

}  // namespace
}  // namespace wimse
