"""Experiment, not product code: freeze the garbage collector's view of the heap once a second
in a `sidechat serve` process, to measure what full (gen 2) collections cost it.

    PYTHONPATH=bench/experiments/gc_freeze python -m bench.profile -c 500 --prefill 2000 --no-spy

Every Python process started with this PYTHONPATH imports it; only one whose command line has
`serve` starts the thread. See docs/performance-log.md, "Profile findings".
"""

import gc
import sys
import threading
import time


def _freeze_forever() -> None:
    while True:
        time.sleep(1.0)
        if "serve" in sys.argv:
            gc.freeze()


threading.Thread(target=_freeze_forever, name="gc-freeze", daemon=True).start()
