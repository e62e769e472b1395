"""The folder of prometheus_client's multiprocess mode, for servers that fork (gunicorn, Celery's
prefork pool): each process writes its counters there, and a scrape sums them.

prometheus_client picks its mode when it is first imported, so the folder must be named (in
PROMETHEUS_MULTIPROC_DIR) before that, in the parent, and the forks inherit it. Files left by an
earlier run would be summed with the new ones: the folder starts empty.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def fresh_multiprocess_dir(configured: str | None) -> Path:
    """Empty `configured` (made if missing), or make a temporary folder removed at exit; name it in
    PROMETHEUS_MULTIPROC_DIR for this process and the ones it forks."""
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="filterviz-metrics-"))
        atexit.register(_remove_in, os.getpid(), folder)
    os.environ[VARIABLE] = str(folder)
    return folder


def _remove_in(owner: int, folder: Path) -> None:
    """Remove the folder when the process that made it exits (forks inherit atexit handlers)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def process_dead(pid: int) -> None:
    """A forked process exited: drop its live-gauge files (its counters stay in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
