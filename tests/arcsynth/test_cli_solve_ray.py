"""`arcsynth solve --ray ADDRESS` on a local Ray cluster of two nodes: the same results and
submission as a one-process run, resume included; clear errors without Ray or a cluster.

The nodes are two `ray start` processes on this machine (one CPU each), each started in
a process group of its own and stopped by signalling that group: `ray stop` would stop
every Ray process of the machine, other people's clusters included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.benchmarks.pipeline import server_double
from arcsynth.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from double_run import TASKS, result_differences, write_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (the 'ray' extra)")
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    # The nodes' workers import arcsynth from this checkout, as the driver does.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
                                 "--node-ip-address", "127.0.0.1", *args],
                                stdout=f, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    _stop_node(proc)
    raise RuntimeError(f"ray node did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _stop_node(proc: subprocess.Popen) -> None:
    """Stop the node's whole process group (gcs, raylet, workers), politely first."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def double():
    with server_double(TASKS, 0.0, 0, "arc1:train") as d:
        yield d


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (the 'ray' extra)")
    # A short path: Ray's unix sockets live under it and socket paths are limited to ~107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="ray-"))
    port = _free_port()
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(tmp)],
                                 tmp / "head.log"))
        nodes.append(_start_node(["--address", f"127.0.0.1:{port}"], tmp / "worker.log"))
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(nodes):
            _stop_node(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def one_process(double, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    cfg = write_config(tmp / "cfg.toml", double.base_url)
    r = runner.invoke(app, ["solve", str(cfg), "--out", str(tmp / "one")])
    assert r.exit_code == 0, r.output
    return cfg, tmp / "one"


def solve_on_ray(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcsynth", "solve", *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)


@needs_ray
def test_a_run_on_two_nodes_equals_the_one_process_run(cluster, one_process, tmp_path):
    cfg, one = one_process
    out = tmp_path / "ray"
    r = solve_on_ray(cfg, "--ray", cluster, "--out", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"run directory: {out}" in r.stdout
    assert result_differences(one, out) == []
    assert (out / "submission.json").read_text() == (one / "submission.json").read_text()
    s_one, s_ray = (json.loads((d / "summary.json").read_text()) for d in (one, out))
    assert s_ray["pass2"] == s_one["pass2"] and s_one["pass2"]["total"] >= 2
    assert s_ray["config_hash"] == s_one["config_hash"]
    prov = json.loads((out / "provenance.json").read_text())
    nodes = prov["ray"]["nodes"]
    assert prov["ray"]["address"] == cluster and len({n["node_id"] for n in nodes}) == 2
    assert all(n["sandbox_layers"] for n in nodes) and prov["model"]["backend"] == "openai"
    # Both nodes solved tasks, each with its own sandbox pool.
    per_node = s_ray["sandbox_stats"]["tasks_per_node"]
    assert len(per_node) == 2 and all(n >= 1 for n in per_node.values()) and sum(per_node.values()) == len(TASKS)
    assert s_ray["sandbox_stats"]["nodes"] == 2 and s_ray["sandbox_stats"]["workers"] == 2
    # The trace is whole: one TokenCount per prompt digest however many nodes counted it.
    from agent.trace import TokenCount, read_trace

    keys = [e.key for e in read_trace(out / "trace.jsonl") if isinstance(e, TokenCount)]
    assert keys and len(keys) == len(set(keys))


@needs_ray
def test_a_run_on_ray_resumes_the_tasks_not_done(cluster, one_process, tmp_path):
    cfg, one = one_process
    out = tmp_path / "ray"
    r = solve_on_ray(cfg, "--ray", cluster, "--out", out, 'data.tasks=["3c9b0459", "6150a2bd", "017c7c7b"]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # Two results lost (a killed driver): the resume redoes exactly those tasks, on the cluster.
    for tid in ("6150a2bd", "017c7c7b"):
        (out / "results" / f"{tid}.json").unlink()
    r = solve_on_ray("--resume", out, "--ray", cluster)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(3 tasks, 1 already done" in r.stdout
    from agent.trace import TaskStart, read_trace

    starts = sorted(e.task_id for e in read_trace(out / "trace.jsonl") if isinstance(e, TaskStart))
    assert starts == sorted(["3c9b0459", "6150a2bd", "6150a2bd", "017c7c7b", "017c7c7b"])
    one_results = {p.stem: json.loads(p.read_text()) for p in (one / "results").glob("*.json")}
    for p in (out / "results").glob("*.json"):
        mine, theirs = json.loads(p.read_text()), one_results[p.stem]
        assert mine["attempts"] == theirs["attempts"] and mine["n_programs"] == theirs["n_programs"], p.stem


@needs_ray
def test_no_cluster_at_the_address_is_a_clear_error_and_leaves_nothing(tmp_path):
    cfg = write_config(tmp_path / "cfg.toml", "http://127.0.0.1:9/v1")
    port = _free_port()  # nothing listens there
    r = runner.invoke(app, ["solve", str(cfg), "--ray", f"127.0.0.1:{port}", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and f"--ray 127.0.0.1:{port}: no Ray cluster listens there" in r.output, r.output
    r = runner.invoke(app, ["solve", str(cfg), "--ray", "headnode", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "give the head node's host:port" in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    cfg = write_config(tmp_path / "cfg.toml", "http://127.0.0.1:9/v1")
    r = runner.invoke(app, ["solve", str(cfg), "--ray", "127.0.0.1:6379", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert "--ray needs Ray, which is not installed: pip install 'arcsynth[ray]'" in " ".join(r.output.split())
    assert not (tmp_path / "run").exists()


@needs_ray
def test_the_tasks_of_a_node_lost_mid_run_are_solved_on_the_others(cluster, one_process, tmp_path):
    _, one = one_process
    # A slow server keeps every task in flight for seconds, so the node dies holding some.
    with server_double(TASKS, 2000.0, 0, "arc1:train") as slow:
        cfg = write_config(tmp_path / "cfg.toml", slow.base_url)
        third = _start_node(["--address", cluster], tmp_path / "third.log")
        out, log = tmp_path / "ray", tmp_path / "solve.log"
        try:
            with open(log, "wb") as f:
                solve = subprocess.Popen([sys.executable, "-m", "arcsynth", "solve", str(cfg), "--ray", cluster,
                                          "--out", str(out)], cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while "completions back" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                assert solve.poll() is None, log.read_text()
                time.sleep(0.2)
        finally:
            _stop_node(third)
        assert solve.wait(300) == 0, log.read_text()[-3000:]
    assert result_differences(one, out) == []
    assert (out / "submission.json").read_text() == (one / "submission.json").read_text()
    from agent.trace import TaskStart, read_trace

    starts = [e.task_id for e in read_trace(out / "trace.jsonl") if isinstance(e, TaskStart)]
    assert set(starts) == set(TASKS) and len(starts) > len(TASKS)  # the lost node's tasks started again
    per_node = json.loads((out / "summary.json").read_text())["sandbox_stats"]["tasks_per_node"]
    assert len(per_node) == 3 and sum(per_node.values()) == len(TASKS)
