#!/usr/bin/python3
"""Tests for tests/run_summary.py on synthetic meson testlogs and GoogleTest XML files.

Run: /usr/bin/python3 tests/run_summary_test.py
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_summary  # noqa: E402

FAKE_GTEST = b"\x7fELF" + b"\0" * 60 + b"--gtest_output=xml" + b"\0"
FAKE_OTHER = b"\x7fELF" + b"\0" * 60 + b"plain program" + b"\0"


def junit(cases):
    """cases: list of (name, kind) with kind in pass/fail/skip/disabled."""
    body = []
    for name, kind in cases:
        status = "notrun" if kind == "disabled" else "run"
        result = "skipped" if kind == "skip" else "completed"
        inner = ""
        if kind == "fail":
            inner = '<failure message="x.cc:1&#x0A;Expected equality" type=""/>'
        elif kind == "skip":
            inner = "<skipped message=\"\"/>"
        body.append(f'<testcase name="{name}" status="{status}" result="{result}" '
                    f'classname="Suite">{inner}</testcase>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="AllTests">'
            f'<testsuite name="Suite">{"".join(body)}</testsuite></testsuites>\n')


class RunSummaryTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.build = self.tmp.name
        os.makedirs(os.path.join(self.build, "meson-logs"))
        os.makedirs(os.path.join(self.build, "tests"))
        self.xml_dir = os.path.join(self.build, "xml")
        os.makedirs(self.xml_dir)
        self.records = []
        self.clock = 100.0

    def tearDown(self):
        self.tmp.cleanup()

    def binary(self, name, content=FAKE_GTEST):
        path = os.path.join(self.build, "tests", name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def xml(self, filename, cases):
        with open(os.path.join(self.xml_dir, filename), "w", encoding="utf-8") as f:
            f.write(junit(cases))

    def add_test(self, name, suite, command, result="OK", returncode=0):
        self.clock += 1
        self.records.append({"name": f"wimse-tpm:{suite} / {name}", "result": result,
                             "returncode": returncode, "command": command,
                             "starttime": self.clock, "duration": 0.5})

    def run_summary(self, *extra):
        log = os.path.join(self.build, "meson-logs", "testlog.json")
        with open(log, "w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = run_summary.main(["--testlog", log, "--gtest-dir", self.xml_dir,
                                   "--suites", "unit", "tpm", "interop", *extra])
        return rc, out.getvalue().splitlines()

    def test_counts_gtest_cases_and_one_per_other_test(self):
        exe = self.binary("unit_a")
        self.add_test("unit_a", "unit", [exe])
        self.xml("unit_a.xml", [("A", "pass"), ("B", "pass"), ("C", "skip"), ("D", "disabled")])
        script = self.binary("interop.sh", b"#!/bin/sh\nexit 0\n")
        self.add_test("interop_ok", "interop", [script])
        self.add_test("interop_skip", "interop", [script], result="SKIP", returncode=77)
        rc, lines = self.run_summary()
        self.assertEqual(rc, 0)
        self.assertEqual(lines[-1], "3 passed, 0 failed")
        self.assertIn("unit                 1       2       0        1", lines)
        self.assertIn("interop              2       1       0        1", lines)

    def test_failed_cases_are_counted_and_named(self):
        exe = self.binary("unit_b")
        self.add_test("unit_b", "unit", [exe], result="FAIL", returncode=1)
        self.xml("unit_b.xml", [("Good", "pass"), ("Bad", "fail"), ("Worse", "fail")])
        rc, lines = self.run_summary()
        self.assertEqual(rc, 1)
        self.assertEqual(lines[-1], "1 passed, 2 failed")
        self.assertIn("FAILED unit / unit_b: Suite.Bad", lines)

    def test_gtest_binary_without_xml_counts_as_failed(self):
        exe = self.binary("tpm_crash")
        # Wrapped like tests/with_swtpm.sh does it, with a path relative to the build dir.
        self.add_test("tpm_crash", "tpm", ["/src/tests/with_swtpm.sh", "tests/tpm_crash"],
                  result="FAIL", returncode=-11)
        self.assertTrue(os.path.exists(exe))
        rc, lines = self.run_summary()
        self.assertEqual(rc, 1)
        self.assertEqual(lines[-1], "0 passed, 1 failed")
        self.assertTrue(any("wrote no XML" in line for line in lines))

    def test_timeout_of_non_gtest_program_is_a_failure(self):
        exe = self.binary("plain", FAKE_OTHER)
        self.add_test("plain", "interop", [exe], result="TIMEOUT", returncode=-15)
        rc, lines = self.run_summary()
        self.assertEqual((rc, lines[-1]), (1, "0 passed, 1 failed"))

    def test_binary_failing_after_all_cases_passed_adds_a_failure(self):
        exe = self.binary("tpm_leak")
        self.add_test("tpm_leak", "tpm", ["/src/tests/with_swtpm.sh", exe], result="FAIL",
                  returncode=1)
        self.xml("tpm_leak.xml", [("A", "pass"), ("B", "pass")])
        rc, lines = self.run_summary()
        self.assertEqual((rc, lines[-1]), (1, "2 passed, 1 failed"))

    def test_same_binary_in_two_tests_uses_both_files(self):
        exe = self.binary("unit_twice")
        self.add_test("first", "unit", [exe, "--gtest_filter=X*"])
        self.add_test("second", "unit", [exe, "--gtest_filter=Y*"])
        self.xml("unit_twice.xml", [("X1", "pass")])
        self.xml("unit_twice_1.xml", [("Y1", "pass"), ("Y2", "pass")])
        rc, lines = self.run_summary()
        self.assertEqual((rc, lines[-1]), (0, "3 passed, 0 failed"))

    def test_stray_xml_is_reported_not_counted(self):
        self.xml("someone_else.xml", [("A", "pass")])
        rc, lines = self.run_summary()
        self.assertEqual((rc, lines[-1]), (0, "0 passed, 0 failed"))
        self.assertTrue(any("matches no meson test" in line for line in lines))

    def test_meson_failure_without_failed_test_is_a_failure(self):
        exe = self.binary("unit_ok")
        self.add_test("unit_ok", "unit", [exe])
        self.xml("unit_ok.xml", [("A", "pass")])
        rc, lines = self.run_summary("--meson-rc", "2")
        self.assertEqual((rc, lines[-1]), (1, "1 passed, 1 failed"))

    def test_missing_testlog_means_nothing_ran(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = run_summary.main(["--testlog", os.path.join(self.build, "none.json"),
                                   "--gtest-dir", self.xml_dir])
        self.assertEqual((rc, out.getvalue().splitlines()[-1]), (0, "0 passed, 0 failed"))


if __name__ == "__main__":
    unittest.main()
