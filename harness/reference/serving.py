"""What every reference node's ``serve-reference`` command does once its node is up: serve until
Ctrl-C or SIGTERM, then stop the node and close the adapter that scores for it."""

from __future__ import annotations

import signal
import threading
from typing import Any


def serve_until_stopped(node: Any, adapter: Any) -> int:
    """Block until Ctrl-C or SIGTERM; then ``node.stop()`` and ``adapter.close()``; exit 0."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
        adapter.close()
    return 0
