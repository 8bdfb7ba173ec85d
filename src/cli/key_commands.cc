// keygen, pubkey, sign: the workload key in the TPM.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "jose/jwk.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse::cli {

namespace {

Result<KeyAlg> ParseAlg(const std::string& s) {
  if (s == "ec-p256") return KeyAlg::kEcP256;
  if (s == "ec-p384") return KeyAlg::kEcP384;
  return Error(Layer::kUsage, "unsupported --alg " + s + " (ec-p256, ec-p384)");
}

struct KeygenOptions {
  std::string out;
  std::string alg = "ec-p256";
  std::string pub_out;
  bool force = false;
};

void RunKeygen(GlobalOptions& g, const KeygenOptions& o) {
  auto alg = ParseAlg(o.alg);
  if (!alg.ok()) return Fail(g, "keygen", alg.error());
  if (!o.force && access(o.out.c_str(), F_OK) == 0) {
    return Fail(g, "keygen", Error(Layer::kUsage, o.out + " exists (use --force to replace it)"));
  }
  // Check the destination before asking the TPM for a key nobody could save.
  std::string out_dir = o.out.find('/') == std::string::npos ? "." : o.out.substr(0, o.out.rfind('/'));
  if (out_dir.empty()) out_dir = "/";
  if (access(out_dir.c_str(), W_OK) != 0) {
    return Fail(g, "keygen", Error(Layer::kIo, "cannot write to directory " + out_dir + ": " +
                                                   std::strerror(errno)));
  }
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto key = tpm::WorkloadKey::Create(ctx, *alg);
  if (!key.ok()) return Fail(g, "keygen", key.error());
  if (!o.pub_out.empty()) {
    auto pem = PublicKeyToPem((*key)->public_key());
    if (!pem.ok()) return Fail(g, "keygen", pem.error());
    auto s = WriteFileAtomic(o.pub_out, *pem, 0644);
    if (!s.ok()) return Fail(g, "keygen", s.error());
  }
  auto s = (*key)->Save(o.out);
  if (!s.ok()) return Fail(g, "keygen", s.error());
  std::printf("wrote %s (TPM name %s)\n", o.out.c_str(), HexEncode((*key)->name()).c_str());
}

struct PubkeyOptions {
  std::string key;
  std::string format = "pem";
};

void RunPubkey(GlobalOptions& g, const PubkeyOptions& o) {
  // Reading the public key needs no TPM I/O: it is in the key file's public area.
  auto key = tpm::WorkloadKey::Open(tpm::SharedContext(tpm::ResolveTcti(g.tcti)), o.key);
  if (!key.ok()) return Fail(g, "pubkey", key.error());
  if (o.format == "pem") {
    auto pem = PublicKeyToPem((*key)->public_key());
    if (!pem.ok()) return Fail(g, "pubkey", pem.error());
    std::fputs(pem->c_str(), stdout);
    return;
  }
  const char* alg = (*key)->alg() == KeyAlg::kEcP384 ? "ES384" : "ES256";
  auto jwk = jose::PublicKeyToJwk((*key)->public_key(), alg);
  if (!jwk.ok()) return Fail(g, "pubkey", jwk.error());
  auto thumb = jose::JwkThumbprint(*jwk);
  if (!thumb.ok()) return Fail(g, "pubkey", thumb.error());
  if (o.format == "jwk") {
    std::cout << jwk->dump() << "\n";
  } else {
    std::cout << *thumb << "\n";
  }
}

struct SignOptions {
  std::string key;
  std::string in;
  std::string out;
  std::string format = "der";
};

void RunSign(GlobalOptions& g, const SignOptions& o) {
  auto data = ReadFileBytes(o.in, 64 << 20);
  if (!data.ok()) return Fail(g, "sign", data.error());
  auto signer = tpm::OpenTpmSigner(g.tcti, o.key);
  if (!signer.ok()) return Fail(g, "sign", signer.error());
  HashAlg hash = (*signer)->key_alg() == KeyAlg::kEcP384 ? HashAlg::kSha384 : HashAlg::kSha256;
  auto digest = Digest(hash, *data);
  if (!digest.ok()) return Fail(g, "sign", digest.error());
  auto raw = (*signer)->SignDigest(hash, *digest);
  if (!raw.ok()) return Fail(g, "sign", raw.error());
  Bytes out = *raw;
  if (o.format == "der") {
    auto der = EcdsaRawToDer(*raw);
    if (!der.ok()) return Fail(g, "sign", der.error());
    out = *der;
  }
  auto s = WriteFileAtomic(o.out, out, 0644);
  if (!s.ok()) return Fail(g, "sign", s.error());
}

}  // namespace

void RegisterKeyCommands(CLI::App& app, GlobalOptions& g) {
  auto* keygen = app.add_subcommand(
      "keygen", "Create a non-exportable signing key in the TPM and write its TSS2 key file");
  auto kg = std::make_shared<KeygenOptions>();
  keygen->add_option("--out", kg->out, "TSS2 PRIVATE KEY file to write (mode 0600)")->required();
  keygen->add_option("--alg", kg->alg, "ec-p256 (default) or ec-p384");
  keygen->add_option("--pubout", kg->pub_out, "also write the public key (PEM SPKI) here");
  keygen->add_flag("--force", kg->force, "replace an existing file");
  keygen->callback([&g, kg] { RunKeygen(g, *kg); });

  auto* pubkey = app.add_subcommand("pubkey", "Print the public key of a TPM key file");
  auto po = std::make_shared<PubkeyOptions>();
  pubkey->add_option("--key", po->key, "TSS2 key file")->required();
  pubkey->add_option("--format", po->format, "pem (SubjectPublicKeyInfo), jwk, or thumbprint")
      ->check(CLI::IsMember({"pem", "jwk", "thumbprint"}));
  pubkey->callback([&g, po] { RunPubkey(g, *po); });

  auto* sign = app.add_subcommand("sign", "Sign a file's SHA-256 (P-384: SHA-384) in the TPM");
  auto so = std::make_shared<SignOptions>();
  sign->add_option("--key", so->key, "TSS2 key file")->required();
  sign->add_option("--in", so->in, "data to sign")->required();
  sign->add_option("--out", so->out, "signature file")->required();
  sign->add_option("--format", so->format, "der (X.509/TLS, default) or raw (JOSE r||s)")
      ->check(CLI::IsMember({"der", "raw"}));
  sign->callback([&g, so] { RunSign(g, *so); });
}

}  // namespace wimse::cli
