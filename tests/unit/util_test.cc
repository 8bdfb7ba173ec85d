#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "util/bytes.h"
#include "util/file.h"
#include "util/result.h"

#include <cstdio>
#include <random>
#include <string>

namespace wimse {
namespace {

TEST(Hex, RoundTripAndStrict) {
  Bytes b = {0x00, 0xab, 0xff};
  EXPECT_EQ(HexEncode(b), "00abff");
  auto d = HexDecode("00ABff");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, b);
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
}

TEST(Ecdsa, RawDerRoundTripMinimal) {
  // r with the top bit set needs a 0x00 pad in DER; s with leading zeros must be stripped.
  Bytes raw(64, 0);
  raw[0] = 0x80;
  raw[31] = 1;
  raw[63] = 7;
  auto der = EcdsaRawToDer(raw);
  ASSERT_TRUE(der.ok()) << der.error().ToString();
  EXPECT_EQ((*der)[0], 0x30);
  EXPECT_EQ((*der)[2], 0x02);
  EXPECT_EQ((*der)[3], 33);  // r: 0x00 pad + 32 bytes
  auto back = EcdsaDerToRaw(*der, 32);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, raw);
  Bytes trailing = *der;
  trailing.push_back(0);
  EXPECT_FALSE(EcdsaDerToRaw(trailing, 32).ok());
}

// The direct DER encoder against OpenSSL's i2d_ECDSA_SIG: random r and s of every curve size,
// with runs of leading zero bytes and top bits set or clear, and the edge values 0 and 1.
TEST(Ecdsa, DirectDerEncodingMatchesOpenSsl) {
  std::mt19937 rng(20261204);
  auto openssl_der = [](ByteView r, ByteView s) {
    ECDSA_SIG* sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr),
                   BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr));
    int len = i2d_ECDSA_SIG(sig, nullptr);
    Bytes out(static_cast<size_t>(len));
    uint8_t* p = out.data();
    i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    return out;
  };
  int cases = 0;
  for (size_t field : {size_t{32}, size_t{48}, size_t{66}}) {
    for (int i = 0; i < 2000; ++i) {
      Bytes raw(2 * field);
      for (auto& b : raw) b = static_cast<uint8_t>(rng());
      // Leading zero bytes on either half, and forced top bits, in every combination.
      size_t zr = rng() % 4 == 0 ? rng() % (field + 1) : 0;
      size_t zs = rng() % 4 == 0 ? rng() % (field + 1) : 0;
      std::fill(raw.begin(), raw.begin() + static_cast<long>(zr), 0);
      std::fill(raw.begin() + static_cast<long>(field), raw.begin() + static_cast<long>(field + zs),
                0);
      if (rng() % 3 == 0 && zr < field) raw[zr] |= 0x80;
      ByteView r = ByteView(raw).subspan(0, field);
      ByteView s = ByteView(raw).subspan(field);
      auto ours = EcdsaRsToDer(r, s);
      ASSERT_TRUE(ours.ok());
      ASSERT_EQ(*ours, openssl_der(r, s)) << "field " << field << " case " << i;
      auto back = EcdsaDerToRaw(*ours, field);
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(*back, raw);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 6000);
  Bytes one = {0x01};
  Bytes zero = {0x00, 0x00};
  EXPECT_EQ(*EcdsaRsToDer(one, zero), openssl_der(one, zero));
  EXPECT_FALSE(EcdsaRsToDer(ByteView(), one).ok());
}

TEST(SoftwareSigner, SignsAndVerifies) {
  auto signer = SoftwareSigner::Generate(KeyAlg::kEcP256);
  ASSERT_TRUE(signer.ok());
  auto digest = Digest(HashAlg::kSha256, AsBytes("hello"));
  ASSERT_TRUE(digest.ok());
  auto sig = (*signer)->SignDigest(HashAlg::kSha256, *digest);
  ASSERT_TRUE(sig.ok()) << sig.error().ToString();
  EXPECT_EQ(sig->size(), 64u);
  EXPECT_TRUE(VerifyDigest((*signer)->public_key(), HashAlg::kSha256, *digest, *sig).ok());
  (*sig)[5] ^= 1;
  EXPECT_FALSE(VerifyDigest((*signer)->public_key(), HashAlg::kSha256, *digest, *sig).ok());
}

TEST(EcPublicKey, OffCurvePointIsRejected) {
  auto signer = SoftwareSigner::Generate(KeyAlg::kEcP256);
  ASSERT_TRUE(signer.ok());
  auto point = EcPublicPoint((*signer)->public_key());
  ASSERT_TRUE(point.ok());
  ByteView x(point->data() + 1, 32), y(point->data() + 33, 32);
  ASSERT_TRUE(EcPublicKeyFromXY(KeyAlg::kEcP256, x, y).ok());
  Bytes bad_y(y.begin(), y.end());
  bad_y[31] ^= 1;
  EXPECT_FALSE(EcPublicKeyFromXY(KeyAlg::kEcP256, x, bad_y).ok());
  Bytes zero(32, 0);
  EXPECT_FALSE(EcPublicKeyFromXY(KeyAlg::kEcP256, zero, zero).ok());
}

TEST(EcPublicKey, FastSpkiEncodingMatchesOpenSsl) {
  for (KeyAlg alg : {KeyAlg::kEcP256, KeyAlg::kEcP384}) {
    auto signer = SoftwareSigner::Generate(alg);
    ASSERT_TRUE(signer.ok());
    auto ours = PublicKeyToDer((*signer)->public_key());
    ASSERT_TRUE(ours.ok());
    int len = i2d_PUBKEY((*signer)->public_key(), nullptr);
    ASSERT_GT(len, 0);
    Bytes theirs(static_cast<size_t>(len));
    uint8_t* p = theirs.data();
    ASSERT_EQ(i2d_PUBKEY((*signer)->public_key(), &p), len);
    EXPECT_EQ(*ours, theirs);
    auto back = PublicKeyFromDer(theirs);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(EVP_PKEY_eq(back->get(), (*signer)->public_key()), 1);
    Bytes off_curve = theirs;
    off_curve.back() ^= 1;
    EXPECT_FALSE(PublicKeyFromDer(off_curve).ok());
    Bytes trailing = theirs;
    trailing.push_back(0);
    EXPECT_FALSE(PublicKeyFromDer(trailing).ok());
  }
}

TEST(ErrorText, EveryResponseCodeLayerKeepsTheFullCode) {
  // Field case C09 (CVE-2023-22745): decoding codes of unknown layers overran a table in
  // tss2-rc, and its first fix dropped the low byte. Our text always carries the whole code.
  std::mt19937 rng(22745);
  std::vector<uint32_t> codes = {0xFFFFFFFFu, 0x80280400u, 0x00000001u};
  for (uint32_t layer = 0; layer < 256; ++layer) {
    for (int i = 0; i < 4; ++i) {
      codes.push_back((layer << 16) | (rng() & 0xFFFFu));
    }
  }
  for (uint32_t rc : codes) {
    std::string text = Error(Layer::kTpm, "TPM2_Sign", rc).ToString();
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%x", rc);
    EXPECT_NE(text.find(std::string(": ") + hex), std::string::npos) << text;
    EXPECT_EQ(text.rfind("tpm: TPM2_Sign", 0), 0u) << text;
  }
}

TEST(File, MakeDirectoriesMakesParentsAndRefusesFiles) {
  char tmpl[] = "/tmp/wimse-mkdirs-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string base = tmpl;
  ASSERT_TRUE(MakeDirectories(base + "/a/b/c", 0700).ok());
  struct stat st {};
  ASSERT_EQ(stat((base + "/a/b/c").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(MakeDirectories(base + "/a/b/c", 0700).ok());  // already there
  ASSERT_TRUE(WriteFileAtomic(base + "/f", std::string_view("x")).ok());
  Status file = MakeDirectories(base + "/f", 0700);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.error().message().find("not a directory"), std::string::npos);
  EXPECT_FALSE(MakeDirectories(base + "/f/sub", 0700).ok());
  std::system(("rm -rf " + base).c_str());
}

TEST(File, AtomicWriteSetsModeAndReplaces) {
  char tmpl[] = "/tmp/wimse-file-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/k.pem";
  ASSERT_TRUE(WriteFileAtomic(path, std::string_view("one"), 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string_view("two"), 0600).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto s = ReadFileString(path);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "two");
  EXPECT_FALSE(WriteFileAtomic(std::string(tmpl) + "/nodir/x", std::string_view("x")).ok());
  unlink(path.c_str());
  rmdir(tmpl);
}

// A failed atomic write leaves what was there and no temporary file behind: here the rename
// fails because the destination is a directory holding a file.
TEST(File, FailedAtomicWriteLeavesNothingBehind) {
  char tmpl[] = "/tmp/wimse-file-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(mkdir((dir + "/k.pem").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFileAtomic(dir + "/k.pem/inner", std::string_view("keep"), 0600).ok());
  EXPECT_FALSE(WriteFileAtomic(dir + "/k.pem", std::string_view("new"), 0600).ok());
  auto kept = ReadFileString(dir + "/k.pem/inner");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, "keep");
  std::string listing;
  FILE* ls = popen(("ls -A " + dir).c_str(), "r");
  ASSERT_NE(ls, nullptr);
  char buf[256];
  while (fgets(buf, sizeof(buf), ls) != nullptr) listing += buf;
  pclose(ls);
  EXPECT_EQ(listing, "k.pem\n") << "temporary file left behind";
  std::system(("rm -rf " + dir).c_str());
}

std::string Listing(const std::string& dir) {
  std::string listing;
  FILE* ls = popen(("ls -A " + dir).c_str(), "r");
  if (ls == nullptr) return "?";
  char buf[256];
  while (fgets(buf, sizeof(buf), ls) != nullptr) listing += buf;
  pclose(ls);
  return listing;
}

// Hostile review: `blobs` deleted a file that was already at --public when writing --private
// failed, and keygen left --pubout behind when the key file could not be written. Several
// outputs are staged and renamed together.
TEST(File, StagedFilesAreAllOrNothing) {
  char tmpl[] = "/tmp/wimse-staged-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(WriteFileAtomic(dir + "/a", std::string_view("old a"), 0644).ok());
  {
    StagedFiles files;
    ASSERT_TRUE(files.Stage(dir + "/a", std::string_view("new a"), 0644).ok());
    EXPECT_FALSE(files.Stage(dir + "/nodir/b", std::string_view("b"), 0600).ok());
    // Abandoned: nothing replaced, no temporary left.
  }
  auto a = ReadFileString(dir + "/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "old a");
  EXPECT_EQ(Listing(dir), "a\n");
  {
    StagedFiles files;
    ASSERT_TRUE(files.Stage(dir + "/a", std::string_view("new a"), 0644).ok());
    EXPECT_FALSE(files.Stage(dir + "/a", std::string_view("again"), 0644).ok());  // same path
    ASSERT_TRUE(files.Stage(dir + "/b", std::string_view("b"), 0600).ok());
    EXPECT_EQ(("\n" + Listing(dir)).find("\nb\n"), std::string::npos) << "visible before Commit";
    ASSERT_TRUE(files.Commit().ok());
  }
  a = ReadFileString(dir + "/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "new a");
  struct stat st;
  ASSERT_EQ(stat((dir + "/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Listing(dir), "a\nb\n");
  // A name that was free when checked but taken before Commit is not replaced without consent
  // (RENAME_NOREPLACE), and the other new file of the same Commit is removed again.
  {
    StagedFiles files;
    ASSERT_TRUE(files.Stage(dir + "/c", std::string_view("c"), 0600, /*replace=*/false).ok());
    ASSERT_TRUE(files.Stage(dir + "/e", std::string_view("e"), 0600, /*replace=*/false).ok());
    ASSERT_TRUE(WriteFileAtomic(dir + "/e", std::string_view("someone else's"), 0644).ok());
    Status s = files.Commit();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("appeared meanwhile; not replaced"), std::string::npos)
        << s.error().ToString();
  }
  auto e = ReadFileString(dir + "/e");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, "someone else's");
  EXPECT_EQ(Listing(dir), "a\nb\ne\n") << "c was created although e could not be";
  // One destination spelled two ways.
  {
    StagedFiles files;
    ASSERT_TRUE(files.Stage(dir + "/f", std::string_view("f"), 0600).ok());
    EXPECT_FALSE(files.Stage(dir + "/./f", std::string_view("f"), 0600).ok());
  }
  EXPECT_TRUE(SameDestination(dir + "/x", dir + "/../" + dir.substr(dir.rfind('/') + 1) + "/x"));
  EXPECT_FALSE(SameDestination(dir + "/x", dir + "/y"));
  // Destination checks before any work.
  EXPECT_FALSE(CheckWritableDestination(dir + "/a", /*replace=*/false).ok());
  EXPECT_TRUE(CheckWritableDestination(dir + "/a", /*replace=*/true).ok());
  EXPECT_TRUE(CheckWritableDestination(dir + "/new", /*replace=*/false).ok());
  ASSERT_EQ(mkdir((dir + "/d").c_str(), 0700), 0);
  auto is_dir = CheckWritableDestination(dir + "/d", /*replace=*/true);
  ASSERT_FALSE(is_dir.ok());
  EXPECT_NE(is_dir.error().message().find("is a directory"), std::string::npos);
  EXPECT_FALSE(CheckWritableDestination(dir + "/nodir/x", /*replace=*/true).ok());
  std::system(("rm -rf " + dir).c_str());
}

// Hostile review: `sign --key FIFO` hung in open() before the regular-file check.
TEST(File, ReadingAFifoFailsAtOnce) {
  char tmpl[] = "/tmp/wimse-fifo-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string fifo = std::string(tmpl) + "/key.pem";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto r = ReadFileBytes(fifo, 4096);  // would block forever without a writer
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not a regular file"), std::string::npos)
      << r.error().ToString();
  unlink(fifo.c_str());
  rmdir(tmpl);
}

}  // namespace
}  // namespace wimse
