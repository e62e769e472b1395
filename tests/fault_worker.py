"""The worker's Celery app with fault hooks, for tests/test_reliability.py and bench/chaos.py only.

Start it as `celery -A tests.fault_worker worker ...`; the product never imports this module. Each
hook is off unless its variable is set:
  FILTERVIZ_TEST_POISON_SEED      a chunk of a job with this seed kills its own process (SIGKILL)
  FILTERVIZ_TEST_PAUSE_SEED       a chunk of a job with this seed waits PAUSE_SECONDS before it
                                  stores its pictures, and its finish step before it reads them;
                                  each logs "fault hook: <step>" first, so a test can stop a
                                  server at that moment
"""

import logging
import os
import signal
import time
from typing import Any

import worker.render
import worker.tasks
from worker.tasks import app  # noqa: F401  (celery -A finds the app here)

log = logging.getLogger(__name__)
POISON_SEED = os.environ.get("FILTERVIZ_TEST_POISON_SEED")
PAUSE_SEED = os.environ.get("FILTERVIZ_TEST_PAUSE_SEED")
PAUSE_SECONDS = 3
HANG_AT_START = os.environ.get("FILTERVIZ_TEST_HANG_AT_START")


def _poisoned(render):
    def render_filters(engine: Any, spec: Any, *args: Any, **kwargs: Any) -> Any:
        if POISON_SEED is not None and spec.seed == int(POISON_SEED):
            log.warning("fault hook: poison chunk kills its process")
            os.kill(os.getpid(), signal.SIGKILL)
        return render(engine, spec, *args, **kwargs)

    return render_filters


def _paused(step: str, call):
    def paused(current: Any, unit: Any, *args: Any) -> Any:
        if PAUSE_SEED is not None and unit.job.spec.seed == int(PAUSE_SEED):
            log.warning("fault hook: %s", step)
            time.sleep(PAUSE_SECONDS)
        return call(current, unit, *args)

    return paused


def _hanging(start):
    def start_process(*args: Any) -> Any:
        if HANG_AT_START:
            log.warning("fault hook: start hangs")
        while HANG_AT_START:
            time.sleep(1)
        return start(*args)

    return start_process


worker.render.render_filters = _poisoned(worker.render.render_filters)
worker.tasks._store_chunk = _paused("store chunk", worker.tasks._store_chunk)
worker.tasks._assemble = _paused("finish", worker.tasks._assemble)
worker.tasks.start_process = _hanging(worker.tasks.start_process)
