// Our own salted HMAC session (src/tpm/hmac_session.h) on swtpm, and its arithmetic against an
// independent implementation (/usr/bin/python3: hashlib, hmac, and the cryptography package for
// AES-CFB), so a shared misreading of the specification cannot make both sides agree.
#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include "crypto/kdf.h"
#include "crypto/public_key.h"
#include "support/tpm_admin.h"
#include "support/tpm_fixture.h"
#include "tpm/hmac_session.h"
#include "tpm/workload_key.h"

namespace wimse {
namespace {

using testing::LockoutCounter;
using testing::ResetDictionaryAttack;
using testing::TpmTest;
using HmacSessionTest = TpmTest;
namespace sm = tpm::session_math;

Bytes RandomBytes(size_t n) {
  Bytes b(n);
  EXPECT_EQ(RAND_bytes(b.data(), static_cast<int>(n)), 1);
  return b;
}

Bytes TestDigest(HashAlg hash, const std::string& msg) {
  auto d = Digest(hash, AsBytes(msg));
  return d.ok() ? *d : Bytes();
}

// The TPM's session handles (loaded and saved), read without flushing ours first (unlike
// TpmContext::CountSessions).
size_t TpmSessionsNow(tpm::TpmContext& ctx) {
  auto n = ctx.Run([&](ESYS_CONTEXT* esys) -> Result<size_t> {
    size_t total = 0;
    for (TPM2_HANDLE first : {TPM2_LOADED_SESSION_FIRST, TPM2_ACTIVE_SESSION_FIRST}) {
      TPMS_CAPABILITY_DATA* caps = nullptr;
      TSS2_RC rc =
          Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                             first, TPM2_MAX_CAP_HANDLES, nullptr, &caps);
      if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetCapability", rc);
      for (uint32_t i = 0; i < caps->data.handles.count; ++i) {
        if ((caps->data.handles.handle[i] >> 24) == (first >> 24)) ++total;
      }
      Esys_Free(caps);
    }
    return total;
  });
  return n.ok() ? *n : 999;
}

// The handle of the context's HMAC session (starting one if there is none).
TPM2_HANDLE HmacSessionHandle(tpm::TpmContext& ctx) {
  auto h = ctx.Run([&](ESYS_CONTEXT* esys) -> Result<TPM2_HANDLE> {
    WIMSE_ASSIGN_OR_RETURN(tpm::HmacSession * s, ctx.HmacSessionLocked(esys));
    return s->handle();
  });
  return h.ok() ? *h : 0;
}

TEST_F(HmacSessionTest, TwoHundredSignaturesPerAlgorithmInOneSessionVerifyInSoftware) {
  struct Case {
    KeyAlg alg;
    HashAlg hash;
    tpm::WorkloadKey::RsaScheme scheme;
  };
  using S = tpm::WorkloadKey::RsaScheme;
  for (Case c : {Case{KeyAlg::kEcP256, HashAlg::kSha256, S::kPkcs1v15},
                 Case{KeyAlg::kEcP384, HashAlg::kSha384, S::kPkcs1v15},
                 Case{KeyAlg::kRsa2048, HashAlg::kSha256, S::kPkcs1v15},
                 Case{KeyAlg::kRsa2048, HashAlg::kSha512, S::kPss}}) {
    SCOPED_TRACE(static_cast<int>(c.alg));
    auto key = tpm::WorkloadKey::Create(ctx_, c.alg, SecretBytes(RandomBytes(20)));
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    TPM2_HANDLE session = 0;
    for (int i = 0; i < 200; ++i) {
      Bytes digest = TestDigest(c.hash, "hmac session " + std::to_string(i));
      auto sig = (*key)->SignDigestRsa(c.hash, digest, c.scheme);
      ASSERT_TRUE(sig.ok()) << i << ": " << sig.error().ToString();
      if (c.scheme == S::kPss) {
        // SignDigestRsa itself checks salt = digest length against the public key; the
        // plain PKCS#1 v1.5 verification must fail for a PSS signature.
        EXPECT_FALSE(VerifyDigest((*key)->public_key(), c.hash, digest, *sig).ok());
      } else {
        ASSERT_TRUE(VerifyDigest((*key)->public_key(), c.hash, digest, *sig).ok()) << i;
      }
      if (i == 0) {
        session = HmacSessionHandle(*ctx_);
        ASSERT_NE(session, 0u);
        EXPECT_EQ(session >> 24, TPM2_HT_HMAC_SESSION);
        // Create used ESAPI's session; signing replaced it: one session in the TPM.
        EXPECT_EQ(TpmSessionsNow(*ctx_), 1u);
      }
    }
    EXPECT_EQ(HmacSessionHandle(*ctx_), session) << "one session for all 200 signatures";
    EXPECT_EQ(TpmSessionsNow(*ctx_), 1u);
  }
}

TEST_F(HmacSessionTest, WrongAuthIsOneAuthFailAndTheSessionIsDroppedCleanly) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("right one")));
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes digest = TestDigest(HashAlg::kSha256, "wrong auth");
  ASSERT_TRUE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  TPM2_HANDLE first = HmacSessionHandle(*ctx_);
  uint32_t before = LockoutCounter(*ctx_);

  (*key)->SetAuth(SecretBytes(AsBytes("wrong one")));
  auto wrong = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().layer(), Layer::kTpm);
  uint32_t rc = wrong.error().tss2_rc();
  EXPECT_TRUE((rc & TPM2_RC_FMT1) != 0 && (rc & 0x3f) == (TPM2_RC_AUTH_FAIL & 0x3f))
      << wrong.error().ToString();
  EXPECT_NE(wrong.error().message().find("TPM_RC_AUTH_FAIL (wrong auth value; not retried"),
            std::string::npos)
      << wrong.error().ToString();
  EXPECT_EQ(LockoutCounter(*ctx_), before + 1) << "exactly one try";
  EXPECT_EQ(TpmSessionsNow(*ctx_), 0u) << "the failed session is flushed, not leaked";

  (*key)->SetAuth(SecretBytes(AsBytes("right one")));
  auto good = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(good.ok()) << good.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *good).ok());
  EXPECT_EQ(TpmSessionsNow(*ctx_), 1u);
  (void)first;
  ASSERT_TRUE(ResetDictionaryAttack(*ctx_).ok());
}

TEST_F(HmacSessionTest, AlteredResponseHmacFailsClosedWithASpecificError) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, SecretBytes(AsBytes("tamper")));
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes digest = TestDigest(HashAlg::kSha256, "tamper");
  ASSERT_TRUE((*key)->SignDigest(HashAlg::kSha256, digest).ok());
  uint32_t before = LockoutCounter(*ctx_);
  auto hooked = ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
    WIMSE_ASSIGN_OR_RETURN(tpm::HmacSession * s, ctx_->HmacSessionLocked(esys));
    s->TamperNextResponseForTesting();
    return OkStatus();
  });
  ASSERT_TRUE(hooked.ok());
  auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_FALSE(sig.ok()) << "a response whose HMAC does not verify must not be accepted";
  EXPECT_NE(sig.error().message().find("the TPM response HMAC does not verify"), std::string::npos)
      << sig.error().ToString();
  EXPECT_EQ(sig.error().tss2_rc(), 0u);
  EXPECT_EQ(TpmSessionsNow(*ctx_), 0u) << "the session is dropped";
  EXPECT_EQ(LockoutCounter(*ctx_), before) << "the TPM itself accepted the command";
  auto again = (*key)->SignDigest(HashAlg::kSha256, digest);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_TRUE(VerifyDigest((*key)->public_key(), HashAlg::kSha256, digest, *again).ok());
}

TEST_F(HmacSessionTest, AtMostOneOfOurSessionsIsEverLoaded) {
  // Create with an auth value uses ESAPI's salted session; signing uses ours. Interleaved, the
  // context never holds two (a direct swtpm TCTI has three session slots in all).
  Bytes digest = TestDigest(HashAlg::kSha256, "one session");
  std::vector<std::shared_ptr<tpm::WorkloadKey>> keys;
  for (int i = 0; i < 3; ++i) {
    auto k = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256,
                                      SecretBytes(AsBytes("k" + std::to_string(i))));
    ASSERT_TRUE(k.ok()) << k.error().ToString();
    EXPECT_EQ(TpmSessionsNow(*ctx_), 1u);
    keys.push_back(*k);
    for (auto& key : keys) {  // more keys than object slots, all in the one session
      auto sig = key->SignDigest(HashAlg::kSha256, digest);
      ASSERT_TRUE(sig.ok()) << sig.error().ToString();
      EXPECT_TRUE(VerifyDigest(key->public_key(), HashAlg::kSha256, digest, *sig).ok());
      EXPECT_EQ(TpmSessionsNow(*ctx_), 1u);
    }
  }
}

// --- Arithmetic against /usr/bin/python3 ---------------------------------------------------

constexpr char kPython[] = R"PY(
import sys, hashlib, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
a = {k: bytes.fromhex(v) for k, v in (x.split('=', 1) for x in sys.argv[1:])}
def kdfa(h, key, label, u, v, bits):
    out, i = b'', 1
    while len(out) * 8 < bits:
        out += hmac.new(key, i.to_bytes(4, 'big') + label + b'\0' + u + v + bits.to_bytes(4, 'big'), h).digest()
        i += 1
    return out[:bits // 8]
def kdfe(h, z, label, u, v, bits):
    out, i = b'', 1
    while len(out) * 8 < bits:
        out += hashlib.new(h, i.to_bytes(4, 'big') + z + label + b'\0' + u + v).digest()
        i += 1
    return out[:bits // 8]
def sha256(*parts):
    return hashlib.sha256(b''.join(parts)).digest()
r = {}
sk = kdfa('sha256', a['salt'], b'ATH', a['ntpm'], a['ncaller'], 256)
sv = sk + a['auth'].rstrip(b'\0')
kiv = kdfa('sha256', sv, b'CFB', a['ncaller'], a['ntpm'], 256)
r['session_key'] = sk
r['cfb_key_iv'] = kiv
r['encrypted'] = Cipher(algorithms.AES(kiv[:16]), modes.CFB(kiv[16:])).encryptor().update(a['digest'])
cp = sha256((0x15d).to_bytes(4, 'big'), a['name'], a['cp'])
r['cp_hash'] = cp
r['cmd_hmac'] = hmac.new(sv, cp + a['ncaller'] + a['ntpm'] + bytes([0x21]), 'sha256').digest()
rp = sha256(b'\0\0\0\0', (0x15d).to_bytes(4, 'big'), a['rp'])
r['rp_hash'] = rp
r['rsp_hmac'] = hmac.new(sv, rp + a['ntpm2'] + a['ncaller'] + bytes([0x01]), 'sha256').digest()
r['kdfa_sha256_640'] = kdfa('sha256', a['salt'], b'STORAGE', a['name'], b'', 640)
r['kdfa_sha384_384'] = kdfa('sha384', a['salt'], b'INTEGRITY', b'', b'', 384)
r['kdfe_sha256_256'] = kdfe('sha256', a['z'], b'SECRET', a['ncaller'], a['ntpm'], 256)
r['kdfe_sha384_768'] = kdfe('sha384', a['z'], b'IDENTITY', a['ncaller'], a['ntpm'], 768)
for k, v in r.items():
    print(k + '=' + v.hex())
)PY";

std::map<std::string, Bytes> RunPython(const std::map<std::string, Bytes>& in) {
  std::string script = "/tmp/wimse-hmac-session-kat-" + std::to_string(getpid()) + ".py";
  FILE* f = std::fopen(script.c_str(), "w");
  if (f == nullptr) return {};
  std::fputs(kPython, f);
  std::fclose(f);
  std::string cmd = "/usr/bin/python3 " + script;
  for (const auto& [k, v] : in) cmd += " " + k + "=" + HexEncode(v);
  std::map<std::string, Bytes> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char line[4096];
  while (std::fgets(line, sizeof(line), p) != nullptr) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    size_t eq = s.find('=');
    if (eq == std::string::npos) continue;
    auto v = HexDecode(s.substr(eq + 1));
    if (v.ok()) out[s.substr(0, eq)] = *v;
  }
  pclose(p);
  std::remove(script.c_str());
  return out;
}

TEST(SessionMath, MatchesAnIndependentPythonImplementation) {
  for (int round = 0; round < 3; ++round) {
    std::map<std::string, Bytes> in = {
        {"salt", RandomBytes(32)},
        {"ntpm", RandomBytes(32)},
        {"ncaller", RandomBytes(32)},
        {"ntpm2", RandomBytes(32)},
        {"digest", RandomBytes(48)},
        {"name", RandomBytes(34)},
        {"cp", RandomBytes(60)},
        {"rp", RandomBytes(80)},
        {"z", RandomBytes(32)},
        // An auth value with trailing zero bytes: the TPM ignores them, so must we.
        {"auth", Bytes{'p', 'w', static_cast<uint8_t>(round), 0, 0}},
    };
    std::map<std::string, Bytes> py = RunPython(in);
    ASSERT_EQ(py.size(), 11u) << "/usr/bin/python3 with the cryptography package is required";

    auto sk = sm::DeriveSessionKey(in["salt"], in["ntpm"], in["ncaller"]);
    ASSERT_TRUE(sk.ok());
    EXPECT_EQ(HexEncode(sk->view()), HexEncode(py["session_key"]));
    SecretBytes sv = sm::SessionValue(sk->view(), in["auth"]);
    EXPECT_EQ(sv.size(), round == 0 ? 32u + 2u : 32u + 3u);  // zero bytes at the end dropped
    auto mac = crypto::HmacKey::Make("SHA256", sv.view());
    ASSERT_TRUE(mac.ok());
    std::array<uint8_t, 32> kiv{};
    ASSERT_TRUE(sm::CommandCfbKeyIv(*mac, in["ncaller"], in["ntpm"], kiv).ok());
    EXPECT_EQ(HexEncode(kiv), HexEncode(py["cfb_key_iv"]));
    Bytes enc(in["digest"].size());
    ASSERT_TRUE(crypto::AesCfb(true, ByteView(kiv.data(), 16), ByteView(kiv.data() + 16, 16),
                               in["digest"], enc)
                    .ok());
    EXPECT_EQ(HexEncode(enc), HexEncode(py["encrypted"]));
    Bytes dec(enc.size());
    ASSERT_TRUE(
        crypto::AesCfb(false, ByteView(kiv.data(), 16), ByteView(kiv.data() + 16, 16), enc, dec)
            .ok());
    EXPECT_EQ(dec, in["digest"]);

    auto cp = sm::CpHash(TPM2_CC_Sign, in["name"], in["cp"]);
    EXPECT_EQ(HexEncode(cp), HexEncode(py["cp_hash"]));
    auto cmd =
        sm::CommandHmac(*mac, cp, in["ncaller"], in["ntpm"], tpm::HmacSession::kSignAttributes);
    ASSERT_TRUE(cmd.ok());
    EXPECT_EQ(HexEncode(*cmd), HexEncode(py["cmd_hmac"]));
    auto rp = sm::RpHash(TPM2_RC_SUCCESS, TPM2_CC_Sign, in["rp"]);
    EXPECT_EQ(HexEncode(rp), HexEncode(py["rp_hash"]));
    EXPECT_TRUE(sm::VerifyResponseHmac(*mac, rp, in["ntpm2"], in["ncaller"],
                                       TPMA_SESSION_CONTINUESESSION, py["rsp_hmac"])
                    .ok());

    auto a1 = crypto::KdfA("SHA256", in["salt"], "STORAGE", in["name"], {}, 640);
    ASSERT_TRUE(a1.ok());
    EXPECT_EQ(HexEncode(*a1), HexEncode(py["kdfa_sha256_640"]));
    auto a2 = crypto::KdfA("SHA384", in["salt"], "INTEGRITY", {}, {}, 384);
    ASSERT_TRUE(a2.ok());
    EXPECT_EQ(HexEncode(*a2), HexEncode(py["kdfa_sha384_384"]));
    auto e1 = crypto::KdfE("SHA256", in["z"], "SECRET", in["ncaller"], in["ntpm"], 256);
    ASSERT_TRUE(e1.ok());
    EXPECT_EQ(HexEncode(*e1), HexEncode(py["kdfe_sha256_256"]));
    auto e2 = crypto::KdfE("SHA384", in["z"], "IDENTITY", in["ncaller"], in["ntpm"], 768);
    ASSERT_TRUE(e2.ok());
    EXPECT_EQ(HexEncode(*e2), HexEncode(py["kdfe_sha384_768"]));
  }
}

TEST(SessionMath, ResponseHmacCheckRejectsAnyFlippedBit) {
  Bytes key = RandomBytes(40);
  auto mac = crypto::HmacKey::Make("SHA256", key);
  ASSERT_TRUE(mac.ok());
  Bytes rp = RandomBytes(32);
  Bytes ntpm = RandomBytes(32);
  Bytes ncaller = RandomBytes(32);
  uint8_t attrs = TPMA_SESSION_CONTINUESESSION;
  // The expected HMAC computed independently of VerifyResponseHmac (one-shot HMAC).
  Bytes data = rp;
  data.insert(data.end(), ntpm.begin(), ntpm.end());
  data.insert(data.end(), ncaller.begin(), ncaller.end());
  data.push_back(attrs);
  auto good = crypto::Hmac("SHA256", key, data);
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(sm::VerifyResponseHmac(*mac, rp, ntpm, ncaller, attrs, *good).ok());
  auto expect_reject = [&](const Status& s, const char* what) {
    ASSERT_FALSE(s.ok()) << what;
    EXPECT_NE(s.error().message().find("the TPM response HMAC does not verify"), std::string::npos)
        << what;
  };
  for (size_t bit : {0u, 77u, 255u}) {
    Bytes bad = *good;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    expect_reject(sm::VerifyResponseHmac(*mac, rp, ntpm, ncaller, attrs, bad), "hmac bit");
    Bytes bad_rp = rp;
    bad_rp[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    expect_reject(sm::VerifyResponseHmac(*mac, bad_rp, ntpm, ncaller, attrs, *good), "rpHash bit");
  }
  expect_reject(sm::VerifyResponseHmac(*mac, rp, ncaller, ntpm, attrs, *good), "nonces swapped");
  expect_reject(
      sm::VerifyResponseHmac(*mac, rp, ntpm, ncaller, attrs | TPMA_SESSION_DECRYPT, *good),
      "attributes");
  expect_reject(sm::VerifyResponseHmac(*mac, rp, ntpm, ncaller, attrs, ByteView(*good).first(31)),
                "truncated");
}

}  // namespace
}  // namespace wimse
