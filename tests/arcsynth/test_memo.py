"""Memos of recent results, emptied together for measuring (their bound is tested with extraction)."""

from __future__ import annotations

import numpy as np

from arcsynth.memo import RecentMemo, clear_all


def test_clear_all_empties_every_memo_of_the_process():
    from agent.program import _RECENT_EXTRACTIONS, _RECENT_HASHES, extract_program, program_hash
    from prompts.encodings import _ENCODED, get_encoding

    mine = RecentMemo(max_chars=1000)
    mine.put("k", "v", 10)
    program_hash("def transform(grid):\n    return grid\n")
    extract_program("```python\ndef transform(grid):\n    return grid[::-1]\n```")
    get_encoding("spaced").encode(np.eye(3, dtype=np.uint8))
    assert len(mine) == 1 and len(_RECENT_HASHES) and len(_RECENT_EXTRACTIONS) and len(_ENCODED)
    clear_all()
    assert len(mine) == 0 and mine.chars == 0
    assert len(_RECENT_HASHES) == len(_RECENT_EXTRACTIONS) == len(_ENCODED) == 0
    mine.put("k", "v", 10)  # still usable afterwards
    assert mine.get("k") == "v"
