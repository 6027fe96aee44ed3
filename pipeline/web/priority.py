"""The web side's threads run at idle priority, below the pipeline they watch."""

from __future__ import annotations

import os
import threading

__all__ = ["yield_to_pipeline"]


def yield_to_pipeline() -> None:
    """Run the calling thread (and the threads it starts) only when the pipeline leaves a core idle.

    The web side watches; it must not slow what it watches. Ray's workers run at nice 15 and the model's
    intra-op threads wait for each other, so a normal-priority thread that wakes on a busy 2-core machine
    stalls a whole model step, not only its own share (``--ui`` cost 7% of a model-bound run's frames/s).
    Linux ``SCHED_IDLE`` never preempts them and still gets a small share when every core is busy, so the
    page and the probes keep answering. Elsewhere: the lowest nice value, or nothing."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except (AttributeError, OSError):
            pass
