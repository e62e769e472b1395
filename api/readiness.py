"""Whether the service can take work now: Redis answers, and S3 takes writes.

An S3 server can answer reads and still refuse every write (a full SeaweedFS does), so storage
is probed with a real write. Requests read the last answer; a stale answer (older than a few
seconds) is refreshed in the background, so readiness polls and submissions never wait on a
probe that S3's retries make slow. Only the very first question waits for an answer.
"""

import threading
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

FRESH_SECONDS = 5.0


def _why(error: Exception) -> str:
    """A short reason naming the failure (S3's own error code and message where it gave one)."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}"[:200]
    return f"{type(error).__name__}: {error}"[:200]


class WriteProbe:
    """The last answer of a storage write probe, refreshed when older than fresh_seconds."""

    def __init__(self, probe: Callable[[], None], fresh_seconds: float = FRESH_SECONDS) -> None:
        self._probe = probe
        self._fresh_seconds = fresh_seconds
        self._lock = threading.Lock()
        self._probing: threading.Thread | None = None
        self._checked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None when storage took the last probe write, else why not."""
        with self._lock:
            stale = self._checked_at is None or time.monotonic() - self._checked_at >= self._fresh_seconds
            if stale and self._probing is None:
                self._probing = threading.Thread(target=self._run, name="storage-write-probe", daemon=True)
                self._probing.start()
            first = self._probing if self._checked_at is None else None
        if first is not None:
            first.join()
        return self._problem

    def _run(self) -> None:
        try:
            self._probe()
            problem = None
        except (BotoCoreError, ClientError) as error:
            problem = f"not writable: {_why(error)}"
        with self._lock:
            self._problem, self._checked_at, self._probing = problem, time.monotonic(), None
