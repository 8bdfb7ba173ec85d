// TPM 2.0 key derivation and the primitives TPM session arithmetic needs, on OpenSSL objects
// fetched ONCE per process.
//
// Why pre-fetched: every EVP_MD_fetch / EVP_MAC_fetch / EVP_CIPHER_fetch walks OpenSSL's name
// map and method store; done per operation (as tpm2-tss 3.2.1 does, in a fresh OSSL_LIB_CTX
// each time) it costs more client CPU than the TPM command itself (bench/README.md, "Where the
// time goes"). Here the digests SHA-1/256/384/512, HMAC and AES-128/192/256-CFB are fetched from
// the default library context on first use and kept for the life of the process (deliberately
// never freed, so no destructor runs against OpenSSL during exit); HMAC keys are set by
// duplicating a digest-bound template (EVP_MAC_CTX_dup), never by name.
//
// KDFa: TPM 2.0 Library Part 1 §11.4.10.2 (SP 800-108 counter mode, HMAC PRF).
// KDFe: TPM 2.0 Library Part 1 §11.4.10.3 (SP 800-56A concatenation KDF).
//
// Thread-safety: the free functions are thread-safe. An HmacKey is not (it reuses one
// EVP_MAC_CTX); give each thread its own or use it under a lock.
#ifndef WIMSE_CRYPTO_KDF_H_
#define WIMSE_CRYPTO_KDF_H_

#include <openssl/evp.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::crypto {

// The pre-fetched digest for "SHA1", "SHA256", "SHA384" or "SHA512" (also accepted with a dash,
// any case), or nullptr for anything else. Owned by the library; valid until exit.
const EVP_MD* PrefetchedDigest(std::string_view hash_name);

// The pre-fetched AES-CFB cipher (CFB128) for a 16, 24 or 32 byte key, or nullptr. Owned by the
// library; valid until exit.
const EVP_CIPHER* PrefetchedAesCfb(size_t key_bytes);

// An HMAC key bound to one digest, keyed once and reused for any number of MACs (each MAC
// re-initialises the same EVP_MAC_CTX; nothing is fetched). OpenSSL wipes the key schedule
// when the object dies. Move-only; not thread-safe.
class HmacKey {
 public:
  // Keys an HMAC with digest `hash_name` (see PrefetchedDigest) and `key` (any length; the
  // caller keeps and wipes its own copy). Errors: Layer::kUsage for an unknown digest,
  // Layer::kOpenSsl when libcrypto fails.
  static Result<HmacKey> Make(std::string_view hash_name, ByteView key);

  HmacKey(HmacKey&&) noexcept = default;
  HmacKey& operator=(HmacKey&&) noexcept = default;

  // Output size in bytes (the digest size).
  size_t size() const { return size_; }

  // HMAC over the concatenation of `parts`, written to `out` (exactly size() bytes).
  Status Mac(std::initializer_list<ByteView> parts, std::span<uint8_t> out);
  // The same, returned as a new buffer.
  Result<Bytes> Mac(std::initializer_list<ByteView> parts);

 private:
  struct CtxFree {
    void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
  };
  HmacKey(EVP_MAC_CTX* ctx, size_t size) : ctx_(ctx), size_(size) {}
  std::unique_ptr<EVP_MAC_CTX, CtxFree> ctx_;
  size_t size_ = 0;
};

// KDFa with the PRF `key`: fills `out` (out.size() * 8 bits are requested, i.e. the bit count
// in the KDF input is 8 * out.size()). `label` gets its terminating zero byte appended.
// Intermediate blocks are wiped. Errors: Layer::kOpenSsl.
Status KdfA(HmacKey& key, std::string_view label, ByteView context_u, ByteView context_v,
            std::span<uint8_t> out);
// KDFa (`bits` of output, rounded up to whole bytes) with an HMAC of digest `hash_name`
// keyed by `key`. The result is key material: the caller wipes it.
Result<Bytes> KdfA(std::string_view hash_name, ByteView key, std::string_view label,
                   ByteView context_u, ByteView context_v, size_t bits);
// KDFe (`bits` of output) with digest `hash_name`: Z is the ECDH shared x-coordinate, `label`
// gets a terminating zero byte, party_u/party_v are the x-coordinates of the ephemeral and the
// static key (in that order, as the TPM uses them). The result is key material.
Result<Bytes> KdfE(std::string_view hash_name, ByteView z, std::string_view label, ByteView party_u,
                   ByteView party_v, size_t bits);

// One-shot HMAC and digest with the pre-fetched algorithms.
Result<Bytes> Hmac(std::string_view hash_name, ByteView key, ByteView data);
Result<Bytes> Hash(std::string_view hash_name, ByteView data);

// AES-CFB (CFB128, the TPM's CFB mode) of `in` into `out` (same size; may alias), with a 16/24/32
// byte key and a 16-byte IV. `ctx` is reused if given (EVP_CIPHER_CTX_new otherwise).
// Errors: Layer::kUsage for bad sizes, Layer::kOpenSsl.
Status AesCfb(bool encrypt, ByteView key, ByteView iv, ByteView in, std::span<uint8_t> out,
              EVP_CIPHER_CTX* ctx = nullptr);

}  // namespace wimse::crypto

#endif  // WIMSE_CRYPTO_KDF_H_
