"""Shared, expensive fixtures: the real SmolLM2 model and a real `transformers serve` process, each made once."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.backends import resolve_embedded_model
from agent.backends.hf_local import TransformersBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The converted embedded model (converted on first use, then reused from the cache)."""
    return resolve_embedded_model("smollm2")


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_folder: Path):
    """One started TransformersBackend on CPU for the whole session: loading costs seconds of scarce CPU."""
    backend = TransformersBackend("smollm2", device="cpu")
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


def _transformers_cli() -> str:
    beside = Path(sys.executable).parent / "transformers"
    found = str(beside) if beside.exists() else shutil.which("transformers")
    if not found:
        pytest.fail("the `transformers` CLI is not installed (pip install 'transformers[serving]')")
    return found


@pytest.fixture(scope="session")
def transformers_server(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `transformers serve` on 127.0.0.1, serving the embedded model; yields (base_url, model name)."""
    port = free_port()
    hub_cache = tmp_path_factory.mktemp("hf-hub-cache")  # /v1/models answers 500 until this exists
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub_cache))
    cmd = [_transformers_cli(), "serve", str(smollm2_folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not become healthy in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"{base}/v1", str(smollm2_folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
