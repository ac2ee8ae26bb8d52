"""Hashes of model weights, recorded with every run so results can be tied to exact weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_files(folder: Path) -> list[Path]:
    """The files that hold a model's weights, in a stable order."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.gguf")) or sorted(folder.glob("*.bin"))
    return files


def weights_sha256(files: list[Path]) -> str:
    """One hash over several weight files: sha256 of 'name:sha256' lines."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{f.name}:{sha256_file(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def cached_weights_hash(folder: Path, memo_dir: Path) -> str | None:
    """sha256 of a model folder's weight files, remembered by path, size and mtime (hashing 15 GB takes a while)."""
    files = weights_files(folder)
    if not files:
        return None
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps([str(folder.resolve()), stamp]).encode()).hexdigest()[:32]
    memo = memo_dir / f"{key}.json"
    try:
        return json.loads(memo.read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = weights_sha256(files)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"folder": str(folder.resolve()), "weights_sha256": digest}))
        os.replace(tmp, memo)
    except OSError:
        pass  # the hash is still reported; it is just computed again next time
    return digest
