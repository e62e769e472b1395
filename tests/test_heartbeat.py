"""The Celery parent's holdings beat and a pool process's heartbeat, on a real Valkey."""

import json
import threading
from types import SimpleNamespace

from shared.deliveries import HOLDINGS
from shared.workers import live_workers
from worker import heartbeat
from worker.heartbeat import Heartbeat, HoldingsBeat


def test_the_first_holdings_beat_runs_in_the_caller_before_the_pool_forks(redis_server, monkeypatch):
    # A pool process forked while another thread is inside its first getaddrinfo (which imports
    # encodings.idna) inherits the import lock held and hangs on its own first connection: the
    # parent's first connection is made before start() returns, in the thread that goes on to fork.
    redis_server.flushall()
    # The later beats' thread is not this test's: it is made but not started.
    unstarted = SimpleNamespace(Thread=lambda **_: SimpleNamespace(start=lambda: None))
    monkeypatch.setattr(heartbeat, "threading", unstarted)
    callers = []

    def held() -> list[str]:
        callers.append(threading.current_thread())
        return ["job:0"]

    HoldingsBeat(redis_server, "host:1", held).start()
    assert callers[0] is threading.current_thread()
    assert json.loads(redis_server.get(HOLDINGS + "host:1"))["held"] == ["job:0"]


def test_no_beat_publishes_a_worker_again_once_it_withdrew(redis_server, monkeypatch):
    # The beat thread goes on until the process ends: a publish after the withdrawal would count a
    # stopped worker as live for LIVE_SECONDS (and the API would key the cache by its weights).
    redis_server.flushall()
    monkeypatch.setattr(heartbeat, "PUBLISH_SECONDS", 0)  # every beat publishes
    lifecycle = SimpleNamespace(jobs=SimpleNamespace(redis=redis_server))
    beating = Heartbeat(lifecycle, "host:2", {"weights": "random:1"})
    beating._beat()
    assert [worker["name"] for worker in live_workers(redis_server)] == ["host:2"]
    beating.withdraw()
    beating._beat()
    assert live_workers(redis_server) == []
