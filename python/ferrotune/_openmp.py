"""How long torch's OpenMP threads spin before they sleep; set before torch is imported.

libgomp, the OpenMP runtime inside the pip torch, has each thread that waits at a barrier or
for new work spin for 300,000 rounds (a few milliseconds) before it sleeps. On a machine shared
with other busy processes the thread it waits for is often descheduled, and the spinning
thread burns its own time slice waiting for it: beside two busy processes, MiniLM training on
2 cores ran at 16% of its quiet speed, where fair sharing gives about half. 30,000 rounds keep
the quiet figures and let a waiting thread give its core back sooner; ferrotune also uses only
the free cores in each step (src/parallel.rs). Figures: bench/README.md, "A shared CPU".

libgomp reads `GOMP_SPINCOUNT` once, when it is loaded with torch, so this only takes effect
when ferrotune is imported before torch; a user's own `GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`
is left as it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPIN_COUNT = "30000"
SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def share_cores(
    environ: MutableMapping[str, str] = os.environ, modules: dict = sys.modules
) -> bool:
    """Sets `GOMP_SPINCOUNT` for the torch about to be imported; whether it did."""
    if "torch" in modules or any(name in environ for name in SETTINGS):
        return False
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
