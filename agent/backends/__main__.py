"""``python -m agent.backends`` prints the converted folder of the embedded model, converting it first if needed.

For serving the embedded model over HTTP::

    transformers serve "$(python -m agent.backends)" --host 127.0.0.1 --port 8000 --device cpu
"""

from __future__ import annotations

import sys

from agent.backends import BackendError, resolve_embedded_model

try:
    print(resolve_embedded_model())
except BackendError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
