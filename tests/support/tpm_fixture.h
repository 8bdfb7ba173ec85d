// GoogleTest fixture for swtpm-backed tests: connects to the private swtpm that
// tests/with_swtpm.sh started (WIMSE_TPM_TCTI) and, after every test, asserts that no transient
// object or session is left in the TPM.
#ifndef WIMSE_TESTS_SUPPORT_TPM_FIXTURE_H_
#define WIMSE_TESTS_SUPPORT_TPM_FIXTURE_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "tpm/context.h"

namespace wimse::testing {

class TpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    ASSERT_NE(tcti, nullptr) << "run under tests/with_swtpm.sh (WIMSE_TPM_TCTI unset)";
    tcti_ = tcti;
    ctx_ = tpm::SharedContext(tcti_);
    auto s = ctx_->Connect();
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    auto before = ctx_->CountTransientObjects();
    ASSERT_TRUE(before.ok()) << before.error().ToString();
    ASSERT_EQ(*before, 0u) << "a previous test leaked transient objects";
  }

  void TearDown() override {
    auto objects = ctx_->CountTransientObjects();  // flushes our own cache first
    ASSERT_TRUE(objects.ok()) << objects.error().ToString();
    EXPECT_EQ(*objects, 0u) << "transient objects leaked in the TPM";
    auto sessions = ctx_->CountSessions();
    ASSERT_TRUE(sessions.ok()) << sessions.error().ToString();
    EXPECT_EQ(*sessions, 0u) << "sessions leaked in the TPM";
  }

  // A fresh directory under /tmp for this test's files.
  std::string TempDir() {
    char tmpl[] = "/tmp/wimse-test-XXXXXX";
    char* d = mkdtemp(tmpl);
    return d ? std::string(d) : std::string("/tmp");
  }

  std::string tcti_;
  std::shared_ptr<tpm::TpmContext> ctx_;
};

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_TPM_FIXTURE_H_
