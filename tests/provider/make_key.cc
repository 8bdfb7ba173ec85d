// provider_make_key OUT.pem [ec-p256|ec-p384|rsa-2048|rsa-3072] [--persist 0x81xxxxxx]: creates a
// workload key in the TPM named by $WIMSE_TPM_TCTI (tpm::WorkloadKey::Create) and writes it as
// a TSS2 PRIVATE KEY file; with --persist also makes it persistent (TPM2_EvictControl). A test
// helper for the provider's shell tests, independent of the wimse-tpm CLI.
#include <cstdio>
#include <cstring>
#include <string>

#include "keyfile/key_ref.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.pem [ALG] [--persist 0x81xxxxxx]\n", argv[0]);
    return 2;
  }
  wimse::KeyAlg alg = wimse::KeyAlg::kEcP256;
  const char* persist = nullptr;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "ec-p256") {
      alg = wimse::KeyAlg::kEcP256;
    } else if (a == "ec-p384") {
      alg = wimse::KeyAlg::kEcP384;
    } else if (a == "rsa-2048") {
      alg = wimse::KeyAlg::kRsa2048;
    } else if (a == "rsa-3072") {
      alg = wimse::KeyAlg::kRsa3072;
    } else if (a == "--persist" && i + 1 < argc) {
      persist = argv[++i];
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  auto ctx = std::make_shared<wimse::tpm::TpmContext>(wimse::tpm::ResolveTcti(""));
  auto key = wimse::tpm::WorkloadKey::Create(ctx, alg);
  if (!key.ok()) {
    std::fprintf(stderr, "%s\n", key.error().ToString().c_str());
    return 1;
  }
  auto saved = (*key)->Save(argv[1]);
  if (!saved.ok()) {
    std::fprintf(stderr, "%s\n", saved.error().ToString().c_str());
    return 1;
  }
  if (persist != nullptr) {
    auto handle = wimse::ParsePersistentHandle(persist);
    if (!handle.ok()) {
      std::fprintf(stderr, "%s\n", handle.error().ToString().c_str());
      return 2;
    }
    auto p = (*key)->Persist(*handle);
    if (!p.ok()) {
      std::fprintf(stderr, "%s\n", p.error().ToString().c_str());
      return 1;
    }
  }
  ctx->FlushCache();
  return 0;
}
