"""The web side's threads run below the pipeline: SCHED_IDLE on Linux, inherited by the threads they start."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from pipeline.web.priority import yield_to_pipeline


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")
def test_a_web_thread_and_its_children_run_at_idle_priority() -> None:
    seen: dict[str, int] = {}

    def web_thread() -> None:
        yield_to_pipeline()
        seen["self"] = os.sched_getscheduler(threading.get_native_id())
        child = threading.Thread(target=lambda: seen.setdefault("child",
                                                                os.sched_getscheduler(threading.get_native_id())))
        child.start()
        child.join()

    t = threading.Thread(target=web_thread)
    t.start()
    t.join()
    assert seen == {"self": os.SCHED_IDLE, "child": os.SCHED_IDLE}
    assert os.sched_getscheduler(threading.get_native_id()) != os.SCHED_IDLE  # the caller's thread untouched
