"""keyutils' keyctl program (a real program over libkeyutils) against the sandbox's
keys, compared with a native run: adding, printing, describing, updating,
searching, linking, listing, permissions, revocation, invalidation, requests
without an upcall's answer, clearing, named session keyrings, logon keys
(issue 13, "Keyrings"); and, in the sandbox only, the quota knobs.

Natively everything happens inside `keyctl session -`: a new anonymous session
keyring of the run's own, so the host user's keyrings are never changed (the
user keyring is only described; Linux's gc drops an invalidated key a moment
later: the script waits before it looks).
Serial numbers are random: every number of five digits or more is masked, and
no listing of a keyring holding several keys is printed (Linux lists a
keyring in its associative array's order, which the sandbox does not copy).
"""
from __future__ import annotations

import re

import pytest

import harness
from harness import PLATFORMS

KEYCTL = "/usr/bin/keyctl"
SCRIPT = r"""
set -u
id=$(keyctl add user sentry-k hello @s)
keyctl print "$id"
keyctl rdescribe "$id"
keyctl rdescribe @s
keyctl describe @s
keyctl update "$id" world && keyctl print "$id"
keyctl search @s user sentry-k >/dev/null && echo found
echo data | keyctl padd user sentry-p @s >/dev/null && keyctl pipe %user:sentry-p
r=$(keyctl newring sentry-r @s)
keyctl link "$id" "$r"
keyctl rdescribe "$r"
keyctl list "$r"
keyctl show "$r"
keyctl setperm "$id" 0x3f3f0000 && keyctl rdescribe "$id"
keyctl chown "$id" 0; keyctl chgrp "$id" 0
keyctl timeout "$id" 1000
keyctl revoke "$id"; keyctl print "$id"
keyctl invalidate "$(keyctl search @s user sentry-p)"; sleep 0.5; keyctl search @s user sentry-p
keyctl unlink "$r" @s
keyctl request user nosuch
keyctl request2 user nosuch callout @s
keyctl purge user sentry-k
keyctl clear @s && keyctl list @s
keyctl add keyring .dot "" @s
keyctl rdescribe @u | cut -d';' -f1,3,4,5
keyctl session sentry-named keyctl rdescribe @s
keyctl add logon svc:x secret @s >/dev/null && keyctl print %logon:svc:x
keyctl rdescribe %logon:svc:x
echo done
"""


def _masked(out: bytes) -> bytes:
    """Serials as N, runs of spaces (their alignment) as one, no indentation."""
    return re.sub(rb"(?m)^ ", b"", re.sub(rb"[0-9]{5,}", b"N", re.sub(rb" +", b" ", out)))


@pytest.fixture(scope="module")
def native():
    harness.require_program(KEYCTL)
    run = harness.run_native(KEYCTL, ["session", "-", "/bin/sh", "-c", SCRIPT], timeout=60)
    assert run.status == 0 and run.stdout.endswith(b"done\n"), run.headline() + run.stderr_text()
    return run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_keyctl_program(platform, native):
    sandbox = harness.run_sandbox(platform, KEYCTL, ["session", "-", "/bin/sh", "-c", SCRIPT], timeout=120)
    harness.check_sentry_sane(sandbox)
    assert sandbox.status == native.status, sandbox.headline() + sandbox.stderr_text()
    assert _masked(sandbox.stdout) == _masked(native.stdout), harness.bytes_diff(
        _masked(native.stdout), _masked(sandbox.stdout))
    assert _masked(harness.strip_sentry_notes(sandbox.stderr)) == _masked(native.stderr), sandbox.stderr_text()
    # what the native run saw, so that a sandbox answering nothing cannot pass
    for line in (b"hello\n", b"world\n", b"data\n", b"keyctl_read_alloc: Key has been revoked\n",
                 b"add_key: Operation not permitted\n", b"logon;0;0;3dN;svc:x\n", b"done\n"):
        assert line in _masked(native.stdout + native.stderr), line


@pytest.mark.parametrize("platform", PLATFORMS)
def test_key_quotas(platform):
    """Sandbox only (natively it would change the host's knobs): /proc/sys/kernel/keys is
    kept and read back, and a user's quota is reached exactly (the session keyring counts)."""
    run = harness.run_sandbox(platform, harness.build("keys", "glibc-static"), ["--quota"])
    harness.check_sentry_sane(run)
    assert run.status == 0 and run.stdout == (
        b"/proc/sys/kernel/keys/maxkeys: 200\n/proc/sys/kernel/keys/gc_delay: 300\n"
        b"maxkeys 5: 0\nmaxbytes 0 (below its minimum): -1 EINVAL\ngc_delay 7: 0\n"
        b"/proc/sys/kernel/keys/maxkeys: 5\n/proc/sys/kernel/keys/gc_delay: 7\n"
        b"user 1000 joins a session keyring: ok\nq0: ok\nq1: ok\nq2: ok\nq3: ok\nq4: -1 EDQUOT\n"
        b"/proc/key-users:  1000:     5 5/5 5/5 65/20000\ndone\n"), run.stdout.decode() + run.stderr_text()
