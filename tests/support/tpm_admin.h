// Test-only TPM administration helpers shared by the swtpm-backed suites: read a TPM property
// (dictionary-attack counters, lockout parameters) and reset the dictionary-attack lockout with
// swtpm's empty lockout auth, set its parameters (each inside TpmContext::Run, one TPM command),
// and sum the exit codes of forked workers.
#ifndef WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_
#define WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_

#include <tss2/tss2_esys.h>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "tpm/context.h"
#include "util/result.h"

namespace wimse::testing {

// TPM2_GetCapability(TPM_PROPERTIES, `prop`): the value, or 0xffffffff on error.
inline uint32_t TpmProperty(tpm::TpmContext& ctx, TPM2_PT prop) {
  auto v = ctx.Run([&](ESYS_CONTEXT* esys) -> Result<uint32_t> {
    TPMS_CAPABILITY_DATA* caps = nullptr;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    TPM2_CAP_TPM_PROPERTIES, prop, 1, nullptr, &caps);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetCapability", rc);
    uint32_t out = caps->data.tpmProperties.tpmProperty[0].value;
    Esys_Free(caps);
    return out;
  });
  return v.ok() ? *v : 0xffffffffu;
}

// The TPM's dictionary-attack failure counter.
inline uint32_t LockoutCounter(tpm::TpmContext& ctx) {
  return TpmProperty(ctx, TPM2_PT_LOCKOUT_COUNTER);
}

// TPM2_DictionaryAttackLockReset with the (empty) lockout auth of a fresh swtpm.
inline Status ResetDictionaryAttack(tpm::TpmContext& ctx) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    TSS2_RC rc = Esys_DictionaryAttackLockReset(esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                                ESYS_TR_NONE, ESYS_TR_NONE);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("DictionaryAttackLockReset", rc);
    return OkStatus();
  });
}

// TPM2_DictionaryAttackParameters with the (empty) lockout auth of a fresh swtpm.
inline Status SetDictionaryAttackParameters(tpm::TpmContext& ctx, uint32_t max_tries,
                                            uint32_t interval, uint32_t recovery) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    TSS2_RC rc =
        Esys_DictionaryAttackParameters(esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                        ESYS_TR_NONE, max_tries, interval, recovery);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("DictionaryAttackParameters", rc);
    return OkStatus();
  });
}

// Forks `n` worker processes; each runs `body` (under a 60 s alarm, so a hang fails the test)
// and _exits with what it returns. The caller collects them with SumOfExitCodes.
inline std::vector<pid_t> ForkWorkers(int n, const std::function<int()>& body) {
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork failed";
      break;
    }
    if (pid == 0) {
      alarm(60);
      _exit(body());
    }
    pids.push_back(pid);
  }
  return pids;
}

// Waits for every process in `pids`; the sum of their exit codes, or -1 (after a test failure
// naming the process) if one was killed or exited with more than `max_each`.
inline int SumOfExitCodes(const std::vector<pid_t>& pids, int max_each) {
  int sum = 0;
  bool bad = false;
  for (pid_t pid : pids) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) > max_each) {
      ADD_FAILURE() << "process " << pid << " was killed or exited with "
                    << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
      bad = true;
      continue;
    }
    sum += WEXITSTATUS(status);
  }
  return bad ? -1 : sum;
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_
