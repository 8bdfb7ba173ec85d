#!/usr/bin/python3
"""Summarises a `meson test` run for ci/test.

Reads meson's build/meson-logs/testlog.json (one JSON object per line, one per meson test) and
the JUnit XML files GoogleTest wrote because GTEST_OUTPUT=xml:DIR/ was set. Prints a per-suite
table, the failing cases, and as the very last line "N passed, N failed", where N counts

  * every GoogleTest test case in the XML files (skipped and disabled cases count as neither),
  * one for every meson test that is not a GoogleTest binary (by meson's result),
  * one failure for a GoogleTest binary that failed without writing XML (crash, timeout, abort
    before the end of the run) or that failed although its XML shows no failed case (e.g. a
    crash in teardown, or the with_swtpm.sh wrapper failing after the binary).

GoogleTest names its file after the executable (NAME.xml, then NAME_1.xml, ... when the file
exists), so a meson test is matched to its XML through the first gtest executable on its command
line. Exit status: 1 if anything failed, else 0. Standard library only.
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

PASS_RESULTS = {"OK", "EXPECTEDFAIL"}
SKIP_RESULTS = {"SKIP"}
# Everything else (FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, INTERRUPT, ...) is a failure.

# Markers GoogleTest leaves in every binary linked with it, statically or dynamically.
GTEST_MARKERS = (b"gtest_output", b"_ZN7testing")


@dataclasses.dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, other):
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped


@dataclasses.dataclass
class TestResult:
    name: str          # "suite / test" as meson prints it, without the project prefix
    suite: str
    counts: Counts
    failures: list     # human-readable lines, one per failing case or failing binary


def parse_meson_name(full_name):
    """'proj:unit+tpm / foo' -> ('unit', 'unit / foo')."""
    prefix, sep, test = full_name.partition(" / ")
    if not sep:
        return "(none)", full_name
    suites = [s.split(":", 1)[-1] for s in prefix.split("+") if s]
    suite = suites[0] if suites else "(none)"
    return suite, f"{suite} / {test}"


def read_testlog(path):
    """Returns the list of test records in meson's testlog.json (missing file: empty list)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def is_gtest_binary(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[:4] == b"\x7fELF" and any(m in data for m in GTEST_MARKERS)


def gtest_executable(command, build_dir):
    """The first element of a meson test's command line that is a GoogleTest binary, or None."""
    for arg in command:
        path = arg if os.path.isabs(arg) else os.path.join(build_dir, arg)
        if os.path.isfile(path) and is_gtest_binary(path):
            return path
    return None


def parse_junit(path):
    """Counts the test cases of one GoogleTest XML file; returns (Counts, failing case names)."""
    counts = Counts()
    failing = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        if case.get("status", "run") == "notrun":  # DISABLED_ tests
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            counts.failed += 1
            failing.append(name)
        elif case.get("result") in ("skipped", "suppressed") or case.find("skipped") is not None:
            counts.skipped += 1
        else:
            counts.passed += 1
    return counts, failing


def group_xml_files(xml_dir, basenames):
    """Maps executable basename -> its XML files (NAME.xml, NAME_1.xml, ...), oldest first."""
    groups = {b: [] for b in basenames}
    if not os.path.isdir(xml_dir):
        return groups, []
    orphans = []
    for entry in sorted(os.listdir(xml_dir)):
        if not entry.endswith(".xml"):
            continue
        stem = entry[:-4]
        owner = stem if stem in groups else None
        if owner is None:
            m = re.fullmatch(r"(.+)_\d+", stem)
            if m and m.group(1) in groups:
                owner = m.group(1)
        path = os.path.join(xml_dir, entry)
        if owner is None:
            orphans.append(path)
        else:
            groups[owner].append(path)
    for files in groups.values():
        files.sort(key=lambda p: (os.path.getmtime(p), p))
    return groups, orphans


def summarise(records, xml_dir, build_dir):
    """Turns testlog records + XML files into TestResults (plus notes about unmatched XML)."""
    gtest_of = [gtest_executable(r.get("command", []), build_dir) for r in records]
    basenames = {os.path.basename(g) for g in gtest_of if g}
    groups, orphans = group_xml_files(xml_dir, basenames)

    # Tests that ran the same executable take its XML files in the order they finished.
    order = sorted(range(len(records)),
                   key=lambda i: records[i].get("starttime", 0) + records[i].get("duration", 0))
    xml_for = {}
    for i in order:
        if gtest_of[i]:
            files = groups[os.path.basename(gtest_of[i])]
            if files:
                xml_for[i] = files.pop(0)

    results = []
    for i, rec in enumerate(records):
        suite, name = parse_meson_name(rec.get("name", "?"))
        result = rec.get("result", "ERROR")
        counts = Counts()
        failures = []
        if i in xml_for:
            try:
                counts, failing = parse_junit(xml_for[i])
                failures = [f"{name}: {case}" for case in failing]
            except ET.ParseError as e:
                counts = Counts(failed=1)
                failures = [f"{name}: unreadable JUnit XML {xml_for[i]}: {e}"]
            if result not in PASS_RESULTS | SKIP_RESULTS and counts.failed == 0:
                counts.failed += 1
                failures.append(f"{name}: {result} (exit code {rec.get('returncode')}) "
                                "although every test case passed")
        elif result in PASS_RESULTS:
            counts.passed = 1
        elif result in SKIP_RESULTS:
            counts.skipped = 1
        else:
            counts.failed = 1
            why = " (GoogleTest binary wrote no XML: crash, timeout or harness failure; see its log above)" if gtest_of[i] else ""
            failures.append(f"{name}: {result} (exit code {rec.get('returncode')}){why}")
        results.append(TestResult(name, suite, counts, failures))
    leftovers = [p for files in groups.values() for p in files] + orphans
    return results, leftovers


def render(results, leftovers, suites, meson_rc=0):
    """Returns the report lines; the last one is 'N passed, N failed'."""
    per_suite = {s: Counts() for s in suites}
    binaries = {s: 0 for s in suites}
    for r in results:
        per_suite.setdefault(r.suite, Counts()).add(r.counts)
        binaries[r.suite] = binaries.get(r.suite, 0) + 1
    total = Counts()
    lines = ["", f"{'suite':<10} {'meson tests':>11} {'passed':>7} {'failed':>7} {'skipped':>8}"]
    for s, c in per_suite.items():
        lines.append(f"{s:<10} {binaries[s]:>11} {c.passed:>7} {c.failed:>7} {c.skipped:>8}")
        total.add(c)
    lines.append(f"{'total':<10} {len(results):>11} {total.passed:>7} {total.failed:>7} "
                 f"{total.skipped:>8}")
    failures = [f for r in results for f in r.failures]
    if meson_rc and total.failed == 0:
        # meson itself failed (bad arguments, interrupted run): never report a clean run.
        total.failed = 1
        failures.append(f"meson test exited with status {meson_rc} and no failed test recorded")
    if failures:
        lines.append("")
        lines.extend(f"FAILED {f}" for f in failures)
    for p in leftovers:
        lines.append(f"note: JUnit file {p} matches no meson test (not counted)")
    lines.append(f"{total.passed} passed, {total.failed} failed")
    return lines, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testlog", required=True, help="build/meson-logs/testlog.json")
    parser.add_argument("--gtest-dir", required=True, help="directory given in GTEST_OUTPUT")
    parser.add_argument("--build-dir", help="meson build dir (default: from --testlog)")
    parser.add_argument("--suites", nargs="*", default=[], help="suites always shown, in order")
    parser.add_argument("--meson-rc", type=int, default=0, help="exit status of `meson test`")
    args = parser.parse_args(argv)
    build_dir = args.build_dir or os.path.dirname(os.path.dirname(os.path.abspath(args.testlog)))
    records = read_testlog(args.testlog)
    results, leftovers = summarise(records, args.gtest_dir, build_dir)
    lines, total = render(results, leftovers, args.suites, args.meson_rc)
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if total.failed else 0


if __name__ == "__main__":
    sys.exit(main())
