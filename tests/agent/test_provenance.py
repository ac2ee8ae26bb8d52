"""Provenance: git revision, versions, model, never failing when a probe fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from agent.provenance import collect_provenance, git_revision, package_versions, strip_credentials


class FakeBackend:
    """TEST DOUBLE: only provenance() matters here."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def provenance(self) -> dict:
        if self.fail:
            raise RuntimeError("model folder vanished")
        return {"backend": "fake", "model": "m", "weights_sha256": "ab" * 32}


def test_record_holds_what_a_reproduction_needs():
    prov = collect_provenance(config_hash="0123456789abcdef", seed=5, argv=["arcsynth", "solve", "x.toml"],
                              backend=FakeBackend(), sandbox_layers=["rlimits", "seccomp"])
    assert prov["config_hash"] == "0123456789abcdef" and prov["seed"] == 5
    assert prov["argv"] == ["arcsynth", "solve", "x.toml"]
    assert prov["model"]["weights_sha256"] == "ab" * 32
    assert prov["sandbox_layers"] == ["rlimits", "seccomp"]
    assert prov["python"] == sys.version.split()[0]
    assert prov["packages"]["pydantic"] and prov["packages"]["numpy"]
    assert prov["arcsynth_version"]
    json.dumps(prov)  # it is written as JSON


def test_a_failing_backend_probe_does_not_fail_the_run():
    prov = collect_provenance(config_hash="h", seed=0, argv=[], backend=FakeBackend(fail=True))
    assert "model folder vanished" in prov["model"]["error"]


def test_absent_packages_are_left_out():
    versions = package_versions(("pydantic", "no-such-distribution-xyz"))
    assert set(versions) == {"pydantic"}


def test_credentials_are_stripped_from_origin():
    assert strip_credentials("https://user:tok3n@github.com/o/r.git") == "https://github.com/o/r.git"
    assert strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env_git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "f.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "f.py"], cwd=repo, check=True)
    subprocess.run([*env_git, "commit", "-q", "-m", "m"], cwd=repo, check=True)
    subprocess.run(["git", "remote", "add", "origin", "https://u:secret@example.com/r.git"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    rev = git_revision(repo)
    assert rev == {"commit": head, "dirty": False, "origin": "https://example.com/r.git"}
    (repo / "f.py").write_text("x = 2\n")
    assert git_revision(repo)["dirty"] is True


def test_not_a_checkout_and_no_git_give_none(tmp_path, monkeypatch):
    assert git_revision(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable reachable
    assert git_revision(tmp_path) is None
