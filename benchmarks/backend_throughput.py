"""Tokens per second of the in-process transformers backend at several samples per request.

    python benchmarks/backend_throughput.py [--model smollm2] [--max-tokens 64] [--n 1 4 8] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from agent.backends.base import Message, SamplingParams
from agent.backends.hf_local import TransformersBackend

PROMPT = [
    Message(role="system", content="You write Python."),
    Message(role="user", content="Write a function transform(grid) that mirrors a grid (list of lists of ints) left to right."),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="model alias, folder or id")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per completion")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 8], help="samples per request")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the backend's)")
    parser.add_argument("--repeats", type=int, default=2, help="requests per n (the best is reported)")
    args = parser.parse_args()

    backend = TransformersBackend(args.model, device=args.device, threads=args.threads)
    started = time.perf_counter()
    await backend.start()
    print(f"load: {time.perf_counter() - started:.1f} s  {backend.provenance()['device']}  load average {os.getloadavg()[0]:.1f}")
    # One warm-up request: the first generate call pays one-off allocation costs.
    await backend.generate(PROMPT, SamplingParams(n=1, max_tokens=4, seed=0), "warmup")
    for n in args.n:
        best = 0.0
        for r in range(args.repeats):
            params = SamplingParams(n=n, temperature=0.8, max_tokens=args.max_tokens, seed=r)
            t0 = time.perf_counter()
            completions = await backend.generate(PROMPT, params, f"n{n}/{r}")
            elapsed = time.perf_counter() - t0
            tokens = sum(c.completion_tokens for c in completions)
            best = max(best, tokens / elapsed)
        print(f"n={n}: {best:.1f} tokens/s total, {best / n:.1f} per sequence")
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
