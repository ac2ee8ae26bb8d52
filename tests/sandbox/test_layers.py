"""Layer detection, reporting and refusal, and the degraded configurations."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import sandbox.layers
import sandbox_probes as probes
from sandbox import CandidateVerdict, Sandbox, SandboxConfig, SandboxUnavailable, verify_program
from sandbox.landlock import abi_version as landlock_abi
from sandbox.layers import KNOWN_LAYERS, missing

PROJECT_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"
SANDBOX_SOURCE = Path(sandbox.layers.__file__).resolve()
ROT180 = "import numpy as np\n\ndef transform(grid):\n    return np.rot90(grid, 2)\n"


def flags(verdict) -> list[int]:
    p = verdict.train[0]
    assert p.output is not None, p
    return p.output[0]


async def attacks_fail(sb: Sandbox, task, secret, home_secret_file, tmp_path, *, own_source_may_show: bool = False) -> None:
    """The network, file, secret and process probes all come back empty.

    ``own_source_may_show``: bubblewrap without Landlock mounts the sandbox
    package itself (the host imports it); a worker running as the caller's own
    uid can read that one directory.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        v = await sb.run(probes.NETWORK.format(port=listener.getsockname()[1]), task)
        assert flags(v) == [0, 0, 0]
        assert probes.no_connection_arrives(listener, 0.2)
    finally:
        listener.close()
    target = tmp_path / f"probe-{uuid.uuid4().hex}"
    v = await sb.run(probes.WRITES.format(targets=[str(target), f"/tmp/arcsynth-{uuid.uuid4().hex}"]), task)
    assert flags(v) == [0, 0] and not target.exists()
    src = probes.SECRETS.format(
        secret=secret[1],
        secret_env=secret[0],
        parent=os.getpid(),
        project_file=PROJECT_FILE,
        home_file=home_secret_file,
        project_source=SANDBOX_SOURCE,
    )
    v = await sb.run(src, task)
    assert flags(v)[:-1] == [0] * (probes.N_SECRET_ATTEMPTS - 1)
    assert flags(v)[-1] == 0 or own_source_may_show
    v = await sb.run(probes.PROCESSES.format(marker="4321.5"), task)
    assert flags(v) == [0] * probes.N_PROCESS_ATTEMPTS
    v = await sb.run(ROT180, task)
    assert v.all_train_pass and v.isolation == sb.layers


def test_minimum_rule():
    assert missing(["process", "rlimits", "seccomp", "landlock"]) == []
    assert missing(["process", "rlimits", "seccomp", "bwrap"]) == []
    assert missing(["process", "rlimits", "seccomp"]) == ["landlock or bwrap"]
    assert missing(["process", "rlimits", "landlock", "bwrap"]) == ["seccomp"]


async def test_full_layers_reported_in_every_verdict(rot180_task, fast_config):
    async with Sandbox(fast_config) as sb:
        layers = sb.layers
        assert set(layers) <= set(KNOWN_LAYERS) and "unsafe" not in layers
        assert {"process", "clean-env", "rlimits", "seccomp"} <= set(layers)
        assert "landlock" in layers or "bwrap" in layers
        if os.geteuid() == 0:
            assert "uid" in layers
        v = await sb.run(ROT180, rot180_task)
        assert v.isolation == layers


async def test_without_bubblewrap_the_attacks_still_fail(rot180_task, fast_config, secret, home_secret_file, tmp_path):
    os.environ[secret[0]] = secret[1]
    try:
        async with Sandbox(fast_config.model_copy(update={"bubblewrap": False})) as sb:
            assert "bwrap" not in sb.layers and "landlock" in sb.layers
            assert "configuration" in sb.unavailable["bwrap"]
            await attacks_fail(sb, rot180_task, secret, home_secret_file, tmp_path)
    finally:
        os.environ.pop(secret[0], None)


async def test_without_landlock_bubblewrap_alone_still_holds(rot180_task, fast_config, secret, home_secret_file, tmp_path):
    os.environ[secret[0]] = secret[1]
    try:
        async with Sandbox(fast_config, disable_layers={"landlock"}) as sb:
            if "bwrap" not in sb.layers:
                pytest.skip(f"bubblewrap does not work here: {sb.unavailable.get('bwrap')}")
            assert "landlock" not in sb.layers
            await attacks_fail(sb, rot180_task, secret, home_secret_file, tmp_path, own_source_may_show=True)
    finally:
        os.environ.pop(secret[0], None)


@pytest.mark.parametrize(
    ("disabled", "config_update", "named"),
    [
        ({"landlock", "bwrap"}, {}, "landlock or bwrap"),
        ({"landlock"}, {"bubblewrap": False}, "landlock or bwrap"),
        ({"seccomp"}, {}, "seccomp"),
    ],
)
async def test_refuses_without_the_minimum(fast_config, disabled, config_update, named):
    sb = Sandbox(fast_config.model_copy(update=config_update), disable_layers=disabled)
    with pytest.raises(SandboxUnavailable) as err:
        await sb.start()
    msg = str(err.value)
    assert f"missing here: {named}" in msg and "unsafe=True" in msg
    assert sb.layers == []


async def test_unsafe_mode_runs_with_processes_and_rlimits_only(rot180_task, fast_config):
    cfg = fast_config.model_copy(update={"unsafe": True, "bubblewrap": False})
    async with Sandbox(cfg, disable_layers={"landlock", "seccomp"}) as sb:
        assert "unsafe" in sb.layers and {"process", "rlimits"} <= set(sb.layers)
        assert "seccomp" not in sb.layers and "landlock" not in sb.layers
        # What is left still holds: limits on time and memory, a crash costs one candidate.
        t0 = time.perf_counter()
        v = await sb.run("def transform(grid):\n    while True:\n        pass\n", rot180_task)
        assert v.train[0].status == "timeout" and time.perf_counter() - t0 < 5.0
        v = await sb.run("import numpy as np\ndef transform(grid):\n    return np.ones((100000, 100000))\n", rot180_task)
        assert "Memory" in v.train[0].error_type
        v = await sb.run(ROT180, rot180_task)
        assert v.all_train_pass and "unsafe" in v.isolation
        # And it is unsafe indeed: without seccomp a program reaches the network.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        try:
            v = await sb.run(probes.NETWORK.format(port=listener.getsockname()[1]), rot180_task)
            assert flags(v)[0] == 1
        finally:
            listener.close()


def test_unknown_layer_name_is_rejected():
    with pytest.raises(ValueError, match="unknown layer"):
        Sandbox(disable_layers={"apparmor"})


def test_config_fields_are_documented_and_strict():
    for name, field in SandboxConfig.model_fields.items():
        assert field.description, f"SandboxConfig.{name} has no description"
    with pytest.raises(ValueError):
        SandboxConfig(workerz=2)
    with pytest.raises(ValueError):
        SandboxConfig(pair_timeout_s=0)


async def test_run_before_start_is_a_clear_error(rot180_task):
    with pytest.raises(RuntimeError, match="not started"):
        await Sandbox().run(ROT180, rot180_task)


def test_verify_program_sync(rot180_task):
    v = verify_program(ROT180, rot180_task)
    assert isinstance(v, CandidateVerdict)
    assert v.all_train_pass and v.rechecked and v.test[0].status == "pass"


async def test_each_kernel_layer_blocks_on_its_own(rot180_task, fast_config, tmp_path):
    """seccomp alone and Landlock alone (unsafe mode, nothing else) each stop network and writes."""
    target = tmp_path / f"probe-{uuid.uuid4().hex}"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    cfg = fast_config.model_copy(update={"unsafe": True, "bubblewrap": False})
    try:
        for only in ("seccomp", "landlock"):
            other = {"seccomp", "landlock"} - {only}
            async with Sandbox(cfg, disable_layers=other) as sb:
                assert only in sb.layers and not (other & set(sb.layers))
                v = await sb.run(probes.NETWORK.format(port=port), rot180_task)
                # TCP is stopped by either (Landlock from ABI 4); a socketpair only by seccomp.
                if only == "seccomp" or landlock_abi() >= 4:
                    assert flags(v)[0] == 0, only
                v = await sb.run(probes.WRITES.format(targets=[str(target)]), rot180_task)
                assert flags(v) == [0] and not target.exists(), only
        assert probes.no_connection_arrives(listener, 0.2)
    finally:
        listener.close()


_NON_ROOT_SCRIPT = """
import asyncio, json, os, socket, sys
sys.path[:0] = [{root!r}, {here!r}]
from conftest import arc_task
import sandbox_probes as probes
from sandbox import Sandbox

async def go():
    task = arc_task("3c9b0459")
    out = {{"euid": os.geteuid()}}
    async with Sandbox() as sb:
        out["layers"] = sb.layers
        out["pass"] = (await sb.run("import numpy as np\\ndef transform(g):\\n    return np.rot90(g, 2)\\n", task)).all_train_pass
        l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
        out["net"] = (await sb.run(probes.NETWORK.format(port=l.getsockname()[1]), task)).train[0].output
        out["proc"] = (await sb.run(probes.PROCESSES.format(marker="777.25"), task)).train[0].output
        out["writes"] = (await sb.run(probes.WRITES.format(targets=[{target!r}]), task)).train[0].output
        out["secrets"] = (await sb.run(probes.SECRETS.format(secret={secret!r}, secret_env={secret_env!r}, parent=os.getpid(),
            project_file={project_file!r}, home_file={project_file!r}, project_source={project_file!r}), task)).train[0].output
    print(json.dumps(out))

asyncio.run(go())
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bwrap to fake a non-root user")
def test_non_root_user_gets_landlock_and_seccomp(tmp_path, secret):
    """As on a GPU box: not root (no uid switch), bubblewrap unusable; the rest still holds."""
    target = tmp_path / "nonroot-probe"
    script = _NON_ROOT_SCRIPT.format(
        root=str(PROJECT_FILE.parent),
        here=str(Path(__file__).parent),
        target=str(target),
        project_file=str(PROJECT_FILE),
        secret_env=secret[0],
        secret=secret[1],
    )
    # A user namespace mapping this process to uid 1000: the sandbox sees a non-root user.
    cmd = ["bwrap", "--unshare-user", "--uid", "1000", "--gid", "1000", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--", sys.executable, "-c", script]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, secret[0]: secret[1]})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["euid"] == 1000 and "uid" not in out["layers"]
    assert {"process", "rlimits", "seccomp"} <= set(out["layers"]) and ("landlock" in out["layers"] or "bwrap" in out["layers"])
    assert out["pass"] is True
    assert out["net"] == [[0, 0, 0]] and out["proc"] == [[0] * probes.N_PROCESS_ATTEMPTS]
    assert out["writes"] == [[0]] and not target.exists()
    assert out["secrets"] == [[0] * probes.N_SECRET_ATTEMPTS]


_UID_PROBE = "import os\ndef transform(grid):\n    return [[int(c) for c in str(os.getuid())]]\n"


async def test_two_sandboxes_never_share_worker_uids(rot180_task, fast_config):
    """Concurrent sandboxes (two runs, two test processes) lease disjoint uid blocks."""
    if os.geteuid() != 0:
        pytest.skip("worker uids are switched only when started as root")
    async with Sandbox(fast_config) as a, Sandbox(fast_config) as b:
        ua = (await a.run(_UID_PROBE, rot180_task)).train[0].output
        ub = (await b.run(_UID_PROBE, rot180_task)).train[0].output
        assert ua and ub and ua != ub
        uid_a = int("".join(map(str, ua[0])))
        uid_b = int("".join(map(str, ub[0])))
        assert abs(uid_a - uid_b) >= sandbox.layers.UID_RANGE - fast_config.workers
        # Another process holding a lease: this one gets a different block.
        code = (
            "import sys, time; sys.path[:0] = [sys.argv[1]]\n"
            "from sandbox.layers import UidLease\n"
            "l = UidLease.acquire(3); print(l.base, flush=True); time.sleep(30)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, str(PROJECT_FILE.parent)], stdout=subprocess.PIPE, text=True)
        try:
            other = int(proc.stdout.readline())
            mine = sandbox.layers.UidLease.acquire(3)
            try:
                assert mine.base != other
                assert other not in (uid_a - uid_a % sandbox.layers.UID_RANGE, uid_b - uid_b % sandbox.layers.UID_RANGE)
            finally:
                mine.release()
        finally:
            proc.kill()
            proc.wait()


_ORPHAN_SCRIPT = """
import asyncio, ctypes, sys
sys.path[:0] = [{root!r}, {here!r}]
from conftest import arc_task
from sandbox import Sandbox, SandboxConfig

SRC = '''import ctypes, time
libc = ctypes.CDLL(None)
def transform(grid):
    libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0
    libc.setsid()
    while True:
        pass
'''

async def go():
    async with Sandbox(SandboxConfig(workers=1, bubblewrap={bwrap}, candidate_timeout_s=60, pair_timeout_s=60)) as sb:
        print(sb._uids.base, flush=True)
        await sb.run(SRC, arc_task("3c9b0459"))

asyncio.run(go())
"""


def _uids_in_use(lo: int, hi: int) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if any(lo <= int(u) < hi for u in line.split()[1:]):
                    found.append(int(pid))
    return found


@pytest.mark.parametrize("bwrap", [True, False], ids=["all-layers", "no-bwrap"])
@pytest.mark.skipif(os.geteuid() != 0, reason="worker uids (to find the workers by) exist only when started as root")
def test_no_worker_outlives_a_killed_trusted_process(bwrap):
    script = _ORPHAN_SCRIPT.format(root=str(PROJECT_FILE.parent), here=str(Path(__file__).parent), bwrap=bwrap)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        base = int(proc.stdout.readline())
        lo, hi = base, base + sandbox.layers.UID_RANGE
        deadline = time.time() + 20
        while not _uids_in_use(lo, hi) and time.time() < deadline:
            time.sleep(0.05)
        assert _uids_in_use(lo, hi), "the program never started"
        time.sleep(0.3)  # it has tried to detach by now
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 5
    while _uids_in_use(lo, hi) and time.time() < deadline:
        time.sleep(0.05)
    assert not _uids_in_use(lo, hi), "a worker survived the trusted process"
