"""The DockerSandbox's hardening, checked against the real engine."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from agenteval.sandbox.base import AGENT_UID, SOLUTION_UID, VERIFIER_UID, FileEntry, SandboxLimits
from agenteval.sandbox.docker import DockerSandbox

pytestmark = pytest.mark.docker

LIMITS = SandboxLimits(memory_bytes=128 * 1024**2, pids=64, workspace_bytes=16 * 1024**2,
                       tmp_bytes=8 * 1024**2, exec_timeout_s=20, output_limit_bytes=64 * 1024)


@pytest.fixture(scope="module")
def box(docker_client: Any, python_image: str) -> Iterator[DockerSandbox]:
    sb = DockerSandbox(docker_client, python_image, LIMITS, labels={"agenteval.test": "hardening"})
    sb.start()
    yield sb
    sb.close()


def test_runs_as_unprivileged_user_without_capabilities(box: DockerSandbox) -> None:
    r = box.exec("id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status")
    uid, capeff, nnp = r.stdout.splitlines()
    assert uid == "1000"  # the agent user of the README's uid table, never root
    assert capeff.split()[1] == "0000000000000000"
    assert nnp.split()[1] == "1"


def test_root_filesystem_is_read_only(box: DockerSandbox) -> None:
    r = box.exec("touch /usr/x")
    assert r.exit_code == 1 and "Read-only file system" in r.stderr


def test_no_network(box: DockerSandbox) -> None:
    code = ("import socket\ntry:\n socket.create_connection(('1.1.1.1', 53), timeout=3)\n print('connected')\n"
            "except OSError as e:\n print('refused', e)")
    r = box.exec(f"python3 -c \"{code}\"")
    assert r.stdout.startswith("refused"), r.stdout + r.stderr
    assert box.exec("cat /sys/class/net/*/operstate; ls /sys/class/net").stdout.split() == ["unknown", "lo"]


def test_memory_hog_is_killed(box: DockerSandbox) -> None:
    r = box.exec("python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))'")
    assert r.exit_code == 137 and r.oom_killed and r.stdout == ""


def test_fork_bomb_is_stopped_by_pids_cap(box: DockerSandbox) -> None:
    t0 = time.monotonic()
    r = box.exec("f() { f | f & }; f; sleep 1", timeout_s=15)
    assert time.monotonic() - t0 < 15
    assert "fork" in r.stderr.lower()
    box.kill_processes(AGENT_UID)
    after = box.exec("ps -e -o pid= | wc -l")
    assert after.exit_code == 0 and int(after.stdout) < 10  # the sandbox still works, the bomb is gone


def test_sleep_infinity_is_killed_by_timeout(box: DockerSandbox) -> None:
    r = box.exec("sleep infinity", timeout_s=2)
    assert r.timed_out and r.duration_s < 2 + 6


def test_escaped_process_cannot_hold_a_command_open(box: DockerSandbox) -> None:
    # setsid leaves timeout's process group and keeps stdout open: the command still
    # returns within its bound, and the escaped process is gone once the agent's
    # processes are stopped (as before every verification).
    t0 = time.monotonic()
    r = box.exec("setsid sh -c 'trap \"\" TERM; sleep 1000' ; sleep 1000", timeout_s=1)
    assert r.timed_out and time.monotonic() - t0 < 1 + 2 * 5
    assert "sleep 1000" in box.exec("ps -eo cmd").stdout
    box.kill_processes(AGENT_UID)
    assert "sleep 1000" not in box.exec("ps -eo cmd").stdout


def test_stdout_flood_is_truncated(box: DockerSandbox) -> None:
    r = box.exec("head -c 100000000 /dev/zero")
    assert r.truncated and r.stdout_bytes == 100_000_000 and len(r.stdout) == LIMITS.output_limit_bytes


def test_disk_fill_stops_at_workspace_cap(box: DockerSandbox) -> None:
    r = box.exec("dd if=/dev/zero of=/workspace/fill bs=1M count=100; du -sm /workspace/fill; rm -f fill")
    assert "No space left on device" in r.stderr
    assert int(r.stdout.split()[0]) <= 16
    r = box.exec("dd if=/dev/zero of=/tmp/fill bs=1M count=100; rm -f /tmp/fill")
    assert "No space left on device" in r.stderr


def test_agent_cannot_see_verifier_area(box: DockerSandbox) -> None:
    box.write_files("/agenteval/tests", {"secret.py": FileEntry(b"x = 1\n")}, uid=VERIFIER_UID, dir_mode=0o700)
    r = box.exec("ls /agenteval; cat /agenteval/tests/secret.py")
    assert r.exit_code == 1 and "Permission denied" in r.stderr
    assert box.exec("cat /agenteval/tests/secret.py", uid=VERIFIER_UID).stdout == "x = 1\n"


# CAP_KILL, CAP_SETGID, CAP_SETUID: bits 5, 6 and 7.
VERIFIER_CAPS = "00000000000000e0"
TO_SOLUTION = f"setpriv --reuid={SOLUTION_UID} --regid={SOLUTION_UID} --clear-groups --inh-caps=-all --ambient-caps=-all --"


def test_verifier_holds_only_the_capabilities_to_run_solution_code(box: DockerSandbox) -> None:
    r = box.exec("id -u; id -G; grep -E '^Cap(Eff|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status; "
                 "ps -o uid= -p $PPID", uid=VERIFIER_UID)
    uid, groups, capeff, capamb, nnp, parent = r.stdout.split("\n")[:6]
    assert uid == "1001" and groups == "1001"
    assert capeff.split()[1] == VERIFIER_CAPS and capamb.split()[1] == VERIFIER_CAPS
    assert nnp.split()[1] == "1"
    assert parent.strip() == "0"  # its wrappers belong to root: nothing of the solution's can stop them


def test_solution_code_owns_nothing_of_the_verifier(box: DockerSandbox) -> None:
    box.write_files("/agenteval/tests", {"judge.py": FileEntry(b"ok = True\n")}, uid=VERIFIER_UID, dir_mode=0o700)
    attack = ("id -u; grep -E '^Cap(Prm|Eff|Amb)' /proc/self/status | tr -s '\\t' ' '; "
              "kill -STOP $PPID 2>/dev/null && echo stopped-parent; kill -9 -1; "
              "echo x > /agenteval/tests/judge.py 2>/dev/null && echo wrote-tests; "
              "ls /agenteval/out 2>/dev/null && echo listed-out; chmod 777 /agenteval 2>/dev/null && echo chmod; "
              "cat /proc/$PPID/environ 2>/dev/null && echo read-environ; echo done")
    r = box.exec(f"mkdir -p -m 0300 /agenteval/out && {TO_SOLUTION} sh -c \"{attack}\"; echo verifier-alive $?",
                 uid=VERIFIER_UID)
    lines = r.stdout.splitlines()
    assert lines[0] == "1002", r.stdout + r.stderr
    assert lines[1:4] == ["CapPrm: 0000000000000000", "CapEff: 0000000000000000", "CapAmb: 0000000000000000"]
    assert lines[4:] == ["done", "verifier-alive 0"], r.stdout + r.stderr
    assert box.exec("cat /agenteval/tests/judge.py", uid=VERIFIER_UID).stdout == "ok = True\n"


def test_files_round_trip_with_modes(box: DockerSandbox) -> None:
    box.write_files("/workspace/rt", {"a/b.txt": FileEntry(b"hi\n"), "run.sh": FileEntry(b"#!/bin/sh\necho ok\n", 0o755)})
    assert box.exec("./rt/run.sh && stat -c '%a %u' rt/a/b.txt").stdout.split() == ["ok", "644", "1000"]
    assert box.read_file("/workspace/rt/a/b.txt") == b"hi\n"
    assert box.read_file("/workspace/nothing") is None
    assert box.read_tree("/workspace/rt") == {"a/b.txt": b"hi\n", "run.sh": b"#!/bin/sh\necho ok\n"}
    with pytest.raises(ValueError):
        box.write_files("/workspace", {"../../etc/x": FileEntry(b"")})


def test_close_removes_container_and_volumes(docker_client: Any, python_image: str) -> None:
    sb = DockerSandbox(docker_client, python_image, LIMITS)
    sb.start()
    name = sb.name
    sb.close()
    sb.close()  # idempotent
    assert not docker_client.api.containers(all=True, filters={"name": name})
    vols = (docker_client.api.volumes(filters={"name": name}) or {}).get("Volumes") or []
    assert vols == []
