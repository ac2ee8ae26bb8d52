"""``python -m agent.backends`` prints the converted folder of the embedded model, converting it first if needed.

For serving the embedded model over HTTP::

    transformers serve "$(python -m agent.backends)" --host 127.0.0.1 --port 8000 --device cpu
"""

from __future__ import annotations

import sys

from agent.backends import DEFAULT_MODEL, BackendError, resolve_embedded_model

try:
    # `python -m agent.backends [smollm2]`: the default embedded model, or the one named.
    print(resolve_embedded_model(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL))
except BackendError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
