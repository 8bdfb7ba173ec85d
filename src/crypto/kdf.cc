#include "crypto/kdf.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "crypto/ossl.h"

namespace wimse::crypto {

namespace {

enum DigestIndex { kSha1, kSha256, kSha384, kSha512, kDigestCount };

// Everything fetched once. Never freed: the process (or the module) keeps it until exit, so
// nothing here can run after OpenSSL's own atexit cleanup.
struct Algorithms {
  const EVP_MD* digests[kDigestCount] = {};
  EVP_MAC_CTX* hmac_templates[kDigestCount] = {};  // digest set, no key
  const EVP_CIPHER* aes_cfb[3] = {};               // 128, 192, 256
};

const Algorithms& Get() {
  static const Algorithms* algs = [] {
    auto* a = new Algorithms();
    static const char* const kDigestNames[kDigestCount] = {"SHA1", "SHA256", "SHA384", "SHA512"};
    EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    for (int i = 0; i < kDigestCount; ++i) {
      a->digests[i] = EVP_MD_fetch(nullptr, kDigestNames[i], nullptr);
      if (hmac == nullptr || a->digests[i] == nullptr) continue;
      EVP_MAC_CTX* t = EVP_MAC_CTX_new(hmac);
      OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(
                                  OSSL_MAC_PARAM_DIGEST, const_cast<char*>(kDigestNames[i]), 0),
                              OSSL_PARAM_construct_end()};
      if (t != nullptr && EVP_MAC_CTX_set_params(t, params) == 1) {
        a->hmac_templates[i] = t;
      } else {
        EVP_MAC_CTX_free(t);
      }
    }
    EVP_MAC_free(hmac);  // the templates hold their own references
    a->aes_cfb[0] = EVP_CIPHER_fetch(nullptr, "AES-128-CFB", nullptr);
    a->aes_cfb[1] = EVP_CIPHER_fetch(nullptr, "AES-192-CFB", nullptr);
    a->aes_cfb[2] = EVP_CIPHER_fetch(nullptr, "AES-256-CFB", nullptr);
    return a;
  }();
  return *algs;
}

int DigestIndexOf(std::string_view name) {
  std::string n;
  for (char c : name) {
    if (c != '-') n.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  if (n == "SHA1") return kSha1;
  if (n == "SHA256") return kSha256;
  if (n == "SHA384") return kSha384;
  if (n == "SHA512") return kSha512;
  return -1;
}

void PutU32(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v >> 24);
  out[1] = static_cast<uint8_t>(v >> 16);
  out[2] = static_cast<uint8_t>(v >> 8);
  out[3] = static_cast<uint8_t>(v);
}

}  // namespace

const EVP_MD* PrefetchedDigest(std::string_view hash_name) {
  int i = DigestIndexOf(hash_name);
  return i < 0 ? nullptr : Get().digests[i];
}

const EVP_CIPHER* PrefetchedAesCfb(size_t key_bytes) {
  switch (key_bytes) {
    case 16:
      return Get().aes_cfb[0];
    case 24:
      return Get().aes_cfb[1];
    case 32:
      return Get().aes_cfb[2];
    default:
      return nullptr;
  }
}

Result<HmacKey> HmacKey::Make(std::string_view hash_name, ByteView key) {
  int i = DigestIndexOf(hash_name);
  if (i < 0) return Error(Layer::kUsage, "HMAC: unsupported digest " + std::string(hash_name));
  const EVP_MAC_CTX* tmpl = Get().hmac_templates[i];
  if (tmpl == nullptr) return OpenSslError("HMAC: cannot fetch HMAC-" + std::string(hash_name));
  // EVP_MAC_CTX_dup takes a non-const pointer but only reads the template.
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(const_cast<EVP_MAC_CTX*>(tmpl));
  if (ctx == nullptr) return OpenSslError("HMAC: EVP_MAC_CTX_dup");
  HmacKey out(ctx, static_cast<size_t>(EVP_MD_get_size(Get().digests[i])));
  // A zero-length key still needs a non-null pointer for OpenSSL to treat it as "set".
  static const uint8_t kEmpty = 0;
  if (EVP_MAC_init(ctx, key.empty() ? &kEmpty : key.data(), key.size(), nullptr) != 1) {
    return OpenSslError("HMAC: EVP_MAC_init");
  }
  return out;
}

Status HmacKey::Mac(std::initializer_list<ByteView> parts, std::span<uint8_t> out) {
  if (out.size() != size_) return Error(Layer::kInternal, "HMAC: wrong output size");
  // Re-initialise with the key already set (no key argument): OpenSSL restarts the HMAC from
  // the stored inner/outer pads.
  if (EVP_MAC_init(ctx_.get(), nullptr, 0, nullptr) != 1) return OpenSslError("HMAC: reinit");
  for (ByteView p : parts) {
    if (!p.empty() && EVP_MAC_update(ctx_.get(), p.data(), p.size()) != 1) {
      return OpenSslError("HMAC: update");
    }
  }
  size_t len = 0;
  if (EVP_MAC_final(ctx_.get(), out.data(), &len, out.size()) != 1 || len != size_) {
    return OpenSslError("HMAC: final");
  }
  return OkStatus();
}

Result<Bytes> HmacKey::Mac(std::initializer_list<ByteView> parts) {
  Bytes out(size_);
  WIMSE_RETURN_IF_ERROR(Mac(parts, std::span<uint8_t>(out)));
  return out;
}

Status KdfA(HmacKey& key, std::string_view label, ByteView context_u, ByteView context_v,
            std::span<uint8_t> out) {
  uint8_t block[EVP_MAX_MD_SIZE];
  std::span<uint8_t> block_view(block, key.size());
  uint8_t counter_be[4];
  uint8_t bits_be[4];
  static const uint8_t kZero = 0;
  PutU32(bits_be, static_cast<uint32_t>(out.size() * 8));
  size_t done = 0;
  for (uint32_t counter = 1; done < out.size(); ++counter) {
    PutU32(counter_be, counter);
    Status s = key.Mac({ByteView(counter_be), AsBytes(label), ByteView(&kZero, 1), context_u,
                        context_v, ByteView(bits_be)},
                       block_view);
    if (!s.ok()) {
      OPENSSL_cleanse(block, sizeof(block));
      return s;
    }
    size_t n = std::min(key.size(), out.size() - done);
    std::copy(block, block + n, out.begin() + static_cast<std::ptrdiff_t>(done));
    done += n;
  }
  OPENSSL_cleanse(block, sizeof(block));
  return OkStatus();
}

Result<Bytes> KdfA(std::string_view hash_name, ByteView key, std::string_view label,
                   ByteView context_u, ByteView context_v, size_t bits) {
  if (bits % 8 != 0) return Error(Layer::kUsage, "KDFa: only whole bytes are supported");
  WIMSE_ASSIGN_OR_RETURN(HmacKey prf, HmacKey::Make(hash_name, key));
  Bytes out(bits / 8);
  Status s = KdfA(prf, label, context_u, context_v, std::span<uint8_t>(out));
  if (!s.ok()) {
    OPENSSL_cleanse(out.data(), out.size());  // a partial key stream is secret too
    return std::move(s).error();
  }
  return out;
}

Result<Bytes> KdfE(std::string_view hash_name, ByteView z, std::string_view label, ByteView party_u,
                   ByteView party_v, size_t bits) {
  const EVP_MD* md = PrefetchedDigest(hash_name);
  if (md == nullptr)
    return Error(Layer::kUsage, "KDFe: unsupported digest " + std::string(hash_name));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("KDFe: EVP_MD_CTX_new");
  size_t want = (bits + 7) / 8;
  Bytes out(want);
  uint8_t block[EVP_MAX_MD_SIZE];
  uint8_t counter_be[4];
  static const uint8_t kZero = 0;
  size_t done = 0;
  for (uint32_t counter = 1; done < want; ++counter) {
    PutU32(counter_be, counter);
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), counter_be, 4) != 1 ||
        EVP_DigestUpdate(ctx.get(), z.data(), z.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), label.data(), label.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), &kZero, 1) != 1 ||
        EVP_DigestUpdate(ctx.get(), party_u.data(), party_u.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), party_v.data(), party_v.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), block, &len) != 1) {
      OPENSSL_cleanse(block, sizeof(block));
      OPENSSL_cleanse(out.data(), out.size());
      return OpenSslError("KDFe");
    }
    size_t n = std::min<size_t>(len, want - done);
    std::copy(block, block + n, out.begin() + static_cast<std::ptrdiff_t>(done));
    done += n;
  }
  OPENSSL_cleanse(block, sizeof(block));
  return out;
}

Result<Bytes> Hmac(std::string_view hash_name, ByteView key, ByteView data) {
  WIMSE_ASSIGN_OR_RETURN(HmacKey k, HmacKey::Make(hash_name, key));
  return k.Mac({data});
}

Result<Bytes> Hash(std::string_view hash_name, ByteView data) {
  const EVP_MD* md = PrefetchedDigest(hash_name);
  if (md == nullptr) return Error(Layer::kUsage, "unsupported digest " + std::string(hash_name));
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    return OpenSslError("digest");
  }
  return Bytes(out, out + len);
}

Status AesCfb(bool encrypt, ByteView key, ByteView iv, ByteView in, std::span<uint8_t> out,
              EVP_CIPHER_CTX* ctx) {
  const EVP_CIPHER* cipher = PrefetchedAesCfb(key.size());
  if (cipher == nullptr) return Error(Layer::kUsage, "AES-CFB: unsupported key size");
  if (iv.size() != 16 || out.size() != in.size()) {
    return Error(Layer::kUsage, "AES-CFB: bad IV or output size");
  }
  std::unique_ptr<EVP_CIPHER_CTX, OsslDeleter<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>> own;
  if (ctx == nullptr) {
    own.reset(EVP_CIPHER_CTX_new());
    ctx = own.get();
    if (ctx == nullptr) return OpenSslError("AES-CFB: EVP_CIPHER_CTX_new");
  }
  int len = 0;
  int fin = 0;
  if (EVP_CipherInit_ex2(ctx, cipher, key.data(), iv.data(), encrypt ? 1 : 0, nullptr) != 1 ||
      EVP_CipherUpdate(ctx, out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx, out.data() + len, &fin) != 1 ||
      static_cast<size_t>(len + fin) != in.size()) {
    return OpenSslError("AES-CFB");
  }
  return OkStatus();
}

}  // namespace wimse::crypto
