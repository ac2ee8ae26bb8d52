"""Weights hashes recorded in provenance."""

from __future__ import annotations

import hashlib
import json
import os

from agent.backends.weights import cached_weights_hash, weights_sha256


def test_hash_covers_every_weight_file_and_is_remembered(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-00001-of-00002.safetensors").write_bytes(b"a" * 1000)
    (model / "model-00002-of-00002.safetensors").write_bytes(b"b" * 1000)
    (model / "config.json").write_text("{}")
    memo_dir = tmp_path / "memo"

    expected = hashlib.sha256(
        "".join(f"{n}:{hashlib.sha256(d).hexdigest()}\n" for n, d in [
            ("model-00001-of-00002.safetensors", b"a" * 1000), ("model-00002-of-00002.safetensors", b"b" * 1000)]).encode()
    ).hexdigest()
    assert cached_weights_hash(model, memo_dir) == expected == weights_sha256(sorted(model.glob("*.safetensors")))

    # The memo is what a second call answers (no re-hashing of many GB)...
    [memo] = list(memo_dir.iterdir())
    memo.write_text(json.dumps({"weights_sha256": "remembered"}))
    assert cached_weights_hash(model, memo_dir) == "remembered"

    # ...until a weight file changes.
    shard = model / "model-00002-of-00002.safetensors"
    shard.write_bytes(b"c" * 1000)
    os.utime(shard, ns=(1, 1))
    assert cached_weights_hash(model, memo_dir) not in ("remembered", expected)


def test_folder_without_weights_has_no_hash(tmp_path):
    assert cached_weights_hash(tmp_path, tmp_path / "memo") is None
