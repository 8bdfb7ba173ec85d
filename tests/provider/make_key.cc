// provider_make_key OUT.pem [ec-p256|ec-p384]: creates a workload key in the TPM named by
// $WIMSE_TPM_TCTI (tpm::WorkloadKey::Create) and writes it as a TSS2 PRIVATE KEY file. A test
// helper for tests/interop/provider_cli_test.sh, independent of the wimse-tpm CLI.
#include <cstdio>
#include <cstring>
#include <string>

#include "tpm/context.h"
#include "tpm/workload_key.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUT.pem [ec-p256|ec-p384]\n", argv[0]);
    return 2;
  }
  wimse::KeyAlg alg = wimse::KeyAlg::kEcP256;
  if (argc == 3 && std::strcmp(argv[2], "ec-p384") == 0) {
    alg = wimse::KeyAlg::kEcP384;
  } else if (argc == 3 && std::strcmp(argv[2], "ec-p256") != 0) {
    std::fprintf(stderr, "unknown algorithm %s\n", argv[2]);
    return 2;
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
  return 0;
}
