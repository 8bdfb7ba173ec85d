#!/usr/bin/python3
"""--auth-prompt on a real terminal (a pty): keygen asks twice and refuses a mismatch without
creating anything; the value typed at the prompt is the key's auth value (the key then signs
with the same value given through --auth-env, and the signature verifies in software with
openssl); nothing typed is echoed. Runs under tests/with_swtpm.sh (WIMSE_TPM_TCTI)."""
import os
import pty
import select
import subprocess
import sys
import tempfile
import time

W = os.path.join(os.environ["WIMSE_BUILD_ROOT"], "src/cli/wimse-tpm")
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures += 1


def run_on_pty(argv, answers, timeout=60):
    """Runs argv with a pty as its controlling terminal; answers each "Auth value for" prompt
    with the next of `answers`. Returns (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    shown = b""
    pending = list(answers)
    seen_prompts = 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
        while shown.count(b"Auth value for") > seen_prompts and pending:
            seen_prompts += 1
            os.write(fd, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


with tempfile.TemporaryDirectory(prefix="wimse-prompt-") as d:
    secret = "typed-at-the-prompt-7"
    key = os.path.join(d, "k.pem")

    rc, shown = run_on_pty([W, "keygen", "--out", key, "--auth-prompt"], [secret, secret + "x"])
    check("mismatched confirmation is refused", rc == 1 and "differ" in shown, shown)
    check("mismatch creates no key file", not os.path.exists(key), "file exists")
    check("two prompts were shown", shown.count("Auth value for") == 2, shown)
    check("nothing typed is echoed", secret not in shown, "value echoed")

    rc, shown = run_on_pty([W, "keygen", "--out", key, "--pubout", key + ".pub", "--auth-prompt"],
                           [secret, secret])
    check("matching confirmation makes the key", rc == 0 and os.path.exists(key), shown)
    check("nothing typed is echoed (2)", secret not in shown, "value echoed")

    msg = os.path.join(d, "msg")
    with open(msg, "wb") as f:
        f.write(b"signed with the prompted auth value\n")
    env = dict(os.environ, PROMPT_AUTH=secret)
    sig = os.path.join(d, "msg.sig")
    p = subprocess.run([W, "sign", "--key", key, "--in", msg, "--out", sig, "--auth-env",
                        "PROMPT_AUTH"], env=env, capture_output=True, text=True)
    check("the prompted value is the key's auth value", p.returncode == 0, p.stderr)
    if p.returncode == 0:
        v = subprocess.run(["openssl", "dgst", "-sha256", "-verify", key + ".pub", "-signature",
                            sig, msg], capture_output=True, text=True)
        check("signature verifies in software", v.returncode == 0 and "Verified OK" in v.stdout,
              v.stdout + v.stderr)

print("auth_prompt: %d failure(s)" % failures)
sys.exit(1 if failures else 0)
