// keygen, pubkey, sign: the workload key in the TPM.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "attest/evidence.h"
#include "cli/commands.h"
#include "cli/key_cli_util.h"
#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "jose/jwk.h"
#include "keyfile/auth_source.h"
#include "keyfile/key_ref.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse::cli {

void AddAuthOptions(CLI::App* cmd, AuthSource& src, bool existing_key) {
  cmd->add_option("--auth-file", src.file, "read the key's auth value from this file");
  cmd->add_option("--auth-env", src.env,
                  "read the key's auth value from this environment variable (give its NAME)");
  cmd->add_flag("--auth-prompt", src.prompt, "prompt for the key's auth value (no echo)");
  if (existing_key) {
    cmd->add_flag("--empty-auth", src.empty,
                  "the key has no auth value although its file says emptyAuth FALSE (as "
                  "tpm2_encodeobject writes)");
  }
}

Result<std::shared_ptr<tpm::WorkloadKey>> OpenCliKey(GlobalOptions& g, const std::string& ref,
                                                     const AuthSource& auth) {
  if (auth.empty && auth.any()) {
    return Error(Layer::kUsage,
                 "--empty-auth and --auth-file/--auth-env/--auth-prompt exclude "
                 "each other");
  }
  auto key = tpm::OpenKey(tpm::SharedContext(tpm::ResolveTcti(g.tcti)), ref);
  if (!key.ok()) return key;
  if (auth.any()) {
    WIMSE_ASSIGN_OR_RETURN(SecretBytes value, ReadAuthValue(auth, ref));
    (*key)->SetAuth(std::move(value));
  } else if (auth.empty) {
    if ((*key)->auth_required_by_file()) {
      return Error(Layer::kUsage, (*key)->KeyNoun() +
                                      ": its key file has no emptyAuth field, which means the key "
                                      "has an auth value; --empty-auth is for files with "
                                      "emptyAuth FALSE (nothing was sent to the TPM)");
    }
    (*key)->SetAuth(SecretBytes());
  } else if ((*key)->needs_auth() && !(*key)->auth_required_by_file()) {
    // emptyAuth FALSE: the key has an auth value (wimse-tpm and tpm2-openssl write FALSE for
    // such keys) or none (tpm2_encodeobject 5.4 writes FALSE for every key). An empty try
    // would cost a forgetful user a dictionary-attack strike: the CLI asks to be told.
    return Error(Layer::kUsage,
                 (*key)->KeyNoun() +
                     ": its key file says the key has an auth value (emptyAuth FALSE); give it "
                     "with --auth-file, --auth-env or --auth-prompt, or, for a key without one "
                     "(tpm2_encodeobject writes FALSE for those too), --empty-auth; nothing was "
                     "sent to the TPM (no dictionary-attack strike)");
  }
  return key;
}

namespace {

Result<KeyAlg> ParseAlg(const std::string& s) {
  if (s == "ec-p256") return KeyAlg::kEcP256;
  if (s == "ec-p384") return KeyAlg::kEcP384;
  if (s == "rsa-2048") return KeyAlg::kRsa2048;
  if (s == "rsa-3072") return KeyAlg::kRsa3072;
  return Error(Layer::kUsage, "unsupported --alg " + s + " (ec-p256, ec-p384, rsa-2048, rsa-3072)");
}

bool IsRsa(KeyAlg alg) { return alg == KeyAlg::kRsa2048 || alg == KeyAlg::kRsa3072; }

struct KeygenOptions {
  std::string out;
  std::string alg = "ec-p256";
  std::string pub_out;
  std::string persist;
  AuthSource auth;
  bool force = false;
};

Status CheckKeygenDestinations(const KeygenOptions& o);

void RunKeygen(GlobalOptions& g, const KeygenOptions& o) {
  auto alg = ParseAlg(o.alg);
  if (!alg.ok()) return Fail(g, "keygen", alg.error());
  uint32_t handle = 0;
  if (!o.persist.empty()) {
    auto h = ParsePersistentHandle(o.persist);
    if (!h.ok()) return Fail(g, "keygen", h.error());
    handle = *h;
  }
  if (o.out.empty() && handle == 0) {
    return Fail(g, "keygen", Error(Layer::kUsage, "give --out FILE, --persist HANDLE, or both"));
  }
  SecretBytes auth;
  if (o.auth.any()) {
    AuthSource source = o.auth;
    source.confirm = true;  // a typo at a single prompt would make a key nobody can use
    auto a = ReadAuthValue(source, "the new key");
    if (!a.ok()) return Fail(g, "keygen", a.error());
    auth = std::move(*a);
  }
  // Every destination is checked before the TPM is asked for a key nobody could save.
  {
    auto s = CheckKeygenDestinations(o);
    if (!s.ok()) return Fail(g, "keygen", s.error());
  }
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto key = tpm::WorkloadKey::Create(ctx, *alg, auth);
  if (!key.ok()) return Fail(g, "keygen", key.error());
  // Persist first: a handle already in use fails before any file is written.
  if (handle != 0) {
    auto p = (*key)->Persist(handle);
    if (!p.ok()) return Fail(g, "keygen", p.error());
    std::printf("persisted at handle:%s (TPM name %s)\n", HandleToString(handle).c_str(),
                HexEncode((*key)->name()).c_str());
  }
  // A failure after the key was persisted removes it again: a persistent slot (scarce on real
  // TPMs) must not stay taken by a key whose files were never written.
  auto fail = [&](const Error& e) {
    if (handle != 0) {
      auto undone = tpm::WorkloadKey::EvictPersistent(ctx, handle);
      if (undone.ok()) {
        std::fprintf(stderr, "wimse-tpm: keygen: removed %s again\n",
                     HandleToString(handle).c_str());
      }
    }
    Fail(g, "keygen", e);
  };
  // All files or none: each is staged beside its destination and renamed only when every one
  // was written.
  StagedFiles files;
  if (!o.out.empty()) {
    auto pem = EncodeTss2KeyPem((*key)->key_file());
    if (!pem.ok()) return fail(pem.error());
    auto s = files.Stage(o.out, *pem, 0600, /*replace=*/o.force);
    if (!s.ok()) return fail(s.error());
    // The creation record beside it, for TPM2_CertifyCreation in `attest` (nothing secret).
    if ((*key)->creation()) {
      s = files.Stage(o.out + attest::kKeyCreationSuffix,
                      attest::EncodeKeyCreation(*(*key)->creation(), (*key)->name()), 0644);
      if (!s.ok()) return fail(s.error());
    }
  }
  if (!o.pub_out.empty()) {
    auto pem = PublicKeyToPem((*key)->public_key());
    if (!pem.ok()) return fail(pem.error());
    auto s = files.Stage(o.pub_out, *pem, 0644, /*replace=*/o.force);
    if (!s.ok()) return fail(s.error());
  }
  auto committed = files.Commit();
  if (!committed.ok()) return fail(committed.error());
  if (!o.out.empty()) {
    std::printf("wrote %s (TPM name %s)\n", o.out.c_str(), HexEncode((*key)->name()).c_str());
  }
}

struct EvictOptions {
  std::string handle;
  bool force = false;
};

void RunEvict(GlobalOptions& g, const EvictOptions& o) {
  std::string text = o.handle;
  if (text.rfind(std::string(kHandleUriScheme), 0) == 0)
    text = text.substr(kHandleUriScheme.size());
  auto h = ParsePersistentHandle(text);
  if (!h.ok()) return Fail(g, "evict", h.error());
  auto s =
      tpm::WorkloadKey::EvictPersistent(tpm::SharedContext(tpm::ResolveTcti(g.tcti)), *h, o.force);
  if (!s.ok()) return Fail(g, "evict", s.error());
  std::printf("evicted %s\n", HandleToString(*h).c_str());
}

Status CheckKeygenDestinations(const KeygenOptions& o) {
  if (!o.out.empty()) {
    WIMSE_RETURN_IF_ERROR(CheckWritableDestination(o.out, o.force));
    // The creation record is rewritten with its key file (never kept from an older key).
    WIMSE_RETURN_IF_ERROR(
        CheckWritableDestination(o.out + attest::kKeyCreationSuffix, /*replace=*/true));
  }
  if (!o.pub_out.empty()) {
    if (!o.out.empty() && (SameDestination(o.pub_out, o.out) ||
                           SameDestination(o.pub_out, o.out + attest::kKeyCreationSuffix))) {
      return Error(Layer::kUsage, "--pubout " + o.pub_out +
                                      " is the key file or its creation "
                                      "record");
    }
    WIMSE_RETURN_IF_ERROR(CheckWritableDestination(o.pub_out, o.force));
  }
  return OkStatus();
}

struct PubkeyOptions {
  std::string key;
  std::string format = "pem";
};

void RunPubkey(GlobalOptions& g, const PubkeyOptions& o) {
  // A key file needs no TPM I/O (the public area is in the file); a handle: one ReadPublic.
  auto key = tpm::OpenKey(tpm::SharedContext(tpm::ResolveTcti(g.tcti)), o.key);
  if (!key.ok()) return Fail(g, "pubkey", key.error());
  if (o.format == "pem") {
    auto pem = PublicKeyToPem((*key)->public_key());
    if (!pem.ok()) return Fail(g, "pubkey", pem.error());
    std::fputs(pem->c_str(), stdout);
    return;
  }
  const char* alg = (*key)->alg() == KeyAlg::kEcP384 ? "ES384"
                    : IsRsa((*key)->alg())           ? "RS256"
                                                     : "ES256";
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

struct BlobsOptions {
  std::string key;
  std::string pub;
  std::string priv;
  bool force = false;
};

// The key file's TPM2B_PUBLIC and TPM2B_PRIVATE, as tpm2_load -u/-r reads them (tpm2-tools 5.4
// cannot load a TSS2 PEM file itself). No TPM I/O; the private blob is wrapped by the TPM.
void RunBlobs(GlobalOptions& g, const BlobsOptions& o) {
  if (SameDestination(o.pub, o.key) || SameDestination(o.priv, o.key)) {
    return Fail(g, "blobs",
                Error(Layer::kUsage,
                      "--public and --private must not be the key "
                      "file " +
                          o.key + " (not even with --force)"));
  }
  if (SameDestination(o.pub, o.priv)) {
    return Fail(g, "blobs", Error(Layer::kUsage, "--public and --private are the same file"));
  }
  for (const std::string* path : {&o.pub, &o.priv}) {
    auto s = CheckWritableDestination(*path, o.force);
    if (!s.ok()) return Fail(g, "blobs", s.error());
  }
  auto file = ReadTss2KeyFile(o.key);
  if (!file.ok()) return Fail(g, "blobs", file.error());
  // Both or neither: an existing file at either path is replaced only when both were written.
  StagedFiles files;
  auto s = files.Stage(o.pub, file->public_blob, 0644, /*replace=*/o.force);
  if (s.ok()) s = files.Stage(o.priv, file->private_blob, 0600, /*replace=*/o.force);
  if (s.ok()) s = files.Commit();
  if (!s.ok()) return Fail(g, "blobs", s.error());
}

struct SignOptions {
  std::string key;
  std::string in;
  std::string out;
  std::string format = "der";
  std::string padding;  // empty: pkcs1 for RSA keys
  std::string hash;     // empty: the key's default
  AuthSource auth;
};

Result<HashAlg> ParseHashOption(const std::string& s) {
  if (s == "sha256") return HashAlg::kSha256;
  if (s == "sha384") return HashAlg::kSha384;
  if (s == "sha512") return HashAlg::kSha512;
  return Error(Layer::kUsage, "unsupported --hash " + s + " (sha256, sha384, sha512)");
}

// The TPM scheme fixed in the key's public area (TPM2_ALG_NULL when it signs with any) and its
// hash: a request for another is refused before the TPM is asked.
Status CheckSignOptions(const tpm::WorkloadKey& key, const std::string& padding, HashAlg hash) {
  const TPMT_PUBLIC& pub = key.public_area();
  if (!IsRsa(key.alg()) && !padding.empty()) {
    return Error(Layer::kUsage, "--padding " + padding + " applies to RSA keys only; " +
                                    key.label() + " is an EC key");
  }
  TPM2_ALG_ID scheme = TPM2_ALG_NULL;
  TPM2_ALG_ID scheme_hash = TPM2_ALG_NULL;
  if (pub.type == TPM2_ALG_ECC) {
    scheme = pub.parameters.eccDetail.scheme.scheme;
    scheme_hash = pub.parameters.eccDetail.scheme.details.anySig.hashAlg;
  } else {
    scheme = pub.parameters.rsaDetail.scheme.scheme;
    scheme_hash = pub.parameters.rsaDetail.scheme.details.anySig.hashAlg;
    if (scheme == TPM2_ALG_RSASSA && padding == "pss") {
      return Error(Layer::kUsage, "--padding pss: " + key.label() +
                                      " is bound to RSASSA (PKCS#1 v1.5) in the TPM");
    }
    if (scheme == TPM2_ALG_RSAPSS && padding != "pss") {
      return Error(Layer::kUsage, "--padding pkcs1: " + key.label() +
                                      " is bound to RSAPSS in the TPM (use --padding pss)");
    }
  }
  if (scheme != TPM2_ALG_NULL && scheme_hash != TpmAlgFromHash(hash)) {
    return Error(Layer::kUsage, std::string("--hash ") + HashName(hash) + ": " + key.label() +
                                    " is bound to another hash in the TPM");
  }
  return OkStatus();
}

void RunSign(GlobalOptions& g, const SignOptions& o) {
  if (SameDestination(o.out, o.key) || SameDestination(o.out, o.in)) {
    return Fail(g, "sign",
                Error(Layer::kUsage, "--out " + o.out + " is the key file or the input"));
  }
  auto data = ReadFileBytes(o.in, 64 << 20);
  if (!data.ok()) return Fail(g, "sign", data.error());
  auto key = OpenCliKey(g, o.key, o.auth);
  if (!key.ok()) return Fail(g, "sign", key.error());
  KeyAlg alg = (*key)->alg();
  HashAlg hash =
      alg == KeyAlg::kEcP384 || alg == KeyAlg::kRsa3072 ? HashAlg::kSha384 : HashAlg::kSha256;
  if (!o.hash.empty()) {
    auto h = ParseHashOption(o.hash);
    if (!h.ok()) return Fail(g, "sign", h.error());
    hash = *h;
  }
  auto checked = CheckSignOptions(**key, o.padding, hash);
  if (!checked.ok()) return Fail(g, "sign", checked.error());
  auto digest = Digest(hash, *data);
  if (!digest.ok()) return Fail(g, "sign", digest.error());
  auto raw = (*key)->SignDigestRsa(hash, *digest,
                                   o.padding == "pss" ? tpm::WorkloadKey::RsaScheme::kPss
                                                      : tpm::WorkloadKey::RsaScheme::kPkcs1v15);
  if (!raw.ok()) return Fail(g, "sign", raw.error());
  Bytes out = *raw;
  if (o.format == "der" && !IsRsa(alg)) {
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
  keygen->add_option("--out", kg->out, "TSS2 PRIVATE KEY file to write (mode 0600)");
  keygen->add_option("--alg", kg->alg, "ec-p256 (default), ec-p384, rsa-2048 or rsa-3072")
      ->check(CLI::IsMember({"ec-p256", "ec-p384", "rsa-2048", "rsa-3072"}));
  keygen->add_option("--pubout", kg->pub_out, "also write the public key (PEM SPKI) here");
  keygen->add_option("--persist", kg->persist,
                     "also make the key persistent at this handle (0x81000000..0x81ffffff)");
  AddAuthOptions(keygen, kg->auth, /*existing_key=*/false);
  keygen->add_flag("--force", kg->force,
                   "replace existing files (--out, --pubout; the creation record beside --out is "
                   "always rewritten with it)");
  keygen->callback([&g, kg] { RunKeygen(g, *kg); });

  auto* evict = app.add_subcommand("evict", "Remove a persistent key from the TPM");
  auto eo = std::make_shared<EvictOptions>();
  evict->add_option("--handle", eo->handle, "persistent handle (0x81... or handle:0x81...)")
      ->required();
  evict->add_flag("--force", eo->force,
                  "remove any persistent object, not only a workload key (EK, SRK, AK, ...)");
  evict->callback([&g, eo] { RunEvict(g, *eo); });

  auto* pubkey = app.add_subcommand("pubkey", "Print the public key of a TPM key file");
  auto po = std::make_shared<PubkeyOptions>();
  pubkey->add_option("--key", po->key, "TSS2 key file or handle:0x81xxxxxx")->required();
  pubkey->add_option("--format", po->format, "pem (SubjectPublicKeyInfo), jwk, or thumbprint")
      ->check(CLI::IsMember({"pem", "jwk", "thumbprint"}));
  pubkey->callback([&g, po] { RunPubkey(g, *po); });

  auto* blobs = app.add_subcommand(
      "blobs", "Write a key file's TPM2B_PUBLIC and TPM2B_PRIVATE for tpm2_load -u/-r");
  auto bo = std::make_shared<BlobsOptions>();
  blobs->add_option("--key", bo->key, "TSS2 key file")->required();
  blobs->add_option("--public", bo->pub, "TPM2B_PUBLIC file to write")->required();
  blobs->add_option("--private", bo->priv, "TPM2B_PRIVATE file to write (mode 0600)")->required();
  blobs->add_flag("--force", bo->force, "replace existing files");
  blobs->callback([&g, bo] { RunBlobs(g, *bo); });

  auto* sign =
      app.add_subcommand("sign", "Sign a file's SHA-256 (P-384, RSA-3072: SHA-384) in the TPM");
  auto so = std::make_shared<SignOptions>();
  sign->add_option("--key", so->key, "TSS2 key file or handle:0x81xxxxxx")->required();
  AddAuthOptions(sign, so->auth);
  sign->add_option("--padding", so->padding,
                   "RSA keys only: pkcs1 (default) or pss (salt length = digest length)")
      ->check(CLI::IsMember({"pkcs1", "pss"}));
  sign->add_option("--hash", so->hash,
                   "sha256, sha384 or sha512 (default: SHA-384 for P-384 and RSA-3072, else "
                   "SHA-256); a longer hash than the curve is truncated as FIPS 186-4 says")
      ->check(CLI::IsMember({"sha256", "sha384", "sha512"}));
  sign->add_option("--in", so->in, "data to sign")->required();
  sign->add_option("--out", so->out, "signature file")->required();
  sign->add_option("--format", so->format,
                   "EC keys: der (X.509/TLS, default) or raw (JOSE r||s); RSA: always raw")
      ->check(CLI::IsMember({"der", "raw"}));
  sign->callback([&g, so] { RunSign(g, *so); });
}

}  // namespace wimse::cli
