"""Polls beside many open event streams (issue 29), on a local stack started here without a worker,
so that every job stays queued and every stream stays open and idle (a keepalive every 3 s):

1. status polls alone, of a queued job (its answer estimates its start: a few more Redis reads) and
   of a finished (canceled) one: one client polling back to back (bench/service.py's quiet client),
   and wrk's 32 clients as fast as they get answers (the 2 cores saturated);
2. the same polls while `--streams` event streams (GET /v1/jobs/<id>/events) are open, spread over
   20 queued jobs, with how many /metrics counts open and the API processes' memory before and after.

Each stream holds one of gunicorn's threads (api/events.py), so the stack is given the threads for
them: FILTERVIZ_API_THREADS=128 and FILTERVIZ_EVENT_STREAMS=112 in each of its 2 processes.

    python -m bench.streams [--streams 200]

Target: polls under 50 ms p99 with 200 streams open.
"""

import argparse
import re
import selectors
import socket
import statistics
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests

from bench.service import OPEN_ADMISSION, p99, poll_for, poll_latencies
from devstack.local import LocalStack, free_port, wait_until

JOBS = 20
POLL_SECONDS = 10
STACK_ENV = {"FILTERVIZ_API_WORKERS": "2", "FILTERVIZ_API_THREADS": "128", "FILTERVIZ_EVENT_STREAMS": "112",
             "FILTERVIZ_WEIGHTS": "random:0", **OPEN_ADMISSION}  # fmt: skip
JOB = {"layer": "block1_conv1", "filters": [0], "image_size": 32, "steps": 1, "cache": False}


class OpenStreams:
    """Event streams held open from one thread: each socket's bytes are read and dropped as they come."""

    def __init__(self, api_url: str) -> None:
        self._address = urlsplit(api_url)
        self._selector = selectors.DefaultSelector()
        self._running = True
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self.refused: list[str] = []

    def open(self, job_id: str) -> None:
        """One more stream; its status line is read before the next one opens."""
        connection = socket.create_connection((self._address.hostname, self._address.port), timeout=10)
        request = (f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {self._address.hostname}\r\n"
                   "Accept: text/event-stream\r\n\r\n")  # fmt: skip
        connection.sendall(request.encode())
        status_line = connection.recv(4096).split(b"\r\n", 1)[0].decode()
        if " 200 " not in status_line:
            self.refused.append(status_line)
            connection.close()
            return
        connection.setblocking(False)
        self._selector.register(connection, selectors.EVENT_READ)

    def start_draining(self) -> None:
        self._reader.start()

    def _drain(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=0.5):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                if not connection.recv(65536):
                    self._selector.unregister(connection)
                    connection.close()

    def count(self) -> int:
        return len(self._selector.get_map())

    def close(self) -> None:
        self._running = False
        self._reader.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def api_memory_mb(stack: LocalStack) -> float:
    """Resident memory of the API's gunicorn processes, the master and its workers."""
    master = psutil.Process(stack.processes["api"].pid)
    return sum(process.memory_info().rss for process in [master, *master.children(recursive=True)]) / 2**20


def open_stream_gauge(api_url: str) -> int:
    metrics = requests.get(f"{api_url}/metrics", timeout=10).text
    found = re.search(r"^filterviz_event_streams_open (\S+)$", metrics, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def polls(api_url: str, polled: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per polled job: one client's p50 and p99 (ms), and wrk's p50, p99 and rate."""
    measured = {}
    with requests.Session() as session:
        for label, job_id in polled.items():
            url = f"{api_url}/v1/jobs/{job_id}"
            one = poll_for(session, url, POLL_SECONDS)
            flood = poll_latencies(url)
            measured[label] = {"one p50": statistics.median(one), "one p99": p99(one), **flood}
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), s3_port=free_port(), extra_env=STACK_ENV)
        try:
            stack.start_redis()
            stack.start_s3()
            stack.start_api()
            with requests.Session() as session:
                jobs = [session.post(f"{stack.api_url}/v1/jobs", json={**JOB, "seed": seed}, timeout=10).json()["id"]
                        for seed in range(JOBS + 1)]  # fmt: skip
                canceled = jobs.pop()
                session.post(f"{stack.api_url}/v1/jobs/{canceled}/cancel", json={}, timeout=10).raise_for_status()
            polled = {"a queued job": jobs[0], "a finished job": canceled}
            quiet = polls(stack.api_url, polled)
            memory_before = api_memory_mb(stack)
            streams = OpenStreams(stack.api_url)
            for number in range(args.streams):
                streams.open(jobs[number % JOBS])
            streams.start_draining()
            wait_until(lambda: open_stream_gauge(stack.api_url) == streams.count(), "the gauge of open streams", 30)
            gauge = open_stream_gauge(stack.api_url)
            loaded = polls(stack.api_url, polled)
            memory_after = api_memory_mb(stack)
            still_open = streams.count()
            streams.close()
        finally:
            stack.stop_all()
    refusals = f" ({streams.refused[0]}, ...)" if streams.refused else ""
    print(f"event streams asked {args.streams}: open {gauge} (/metrics), refused {len(streams.refused)}{refusals}, "
          f"still open after the polls {still_open}")  # fmt: skip
    print("| GET /v1/jobs/<id> of | streams open | one client: p50 / p99 ms | wrk, 32 clients: p50 / p99 ms "
          "| wrk requests/s |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    for streams_open, rounds in ((0, quiet), (gauge, loaded)):
        for label, got in rounds.items():
            print(f"| {label} | {streams_open} | {got['one p50']:.1f} / {got['one p99']:.1f} "
                  f"| {got['p50']:.1f} / {got['p99']:.1f} | {got['rate']:.0f} |")  # fmt: skip
    print(f"API memory (RSS, 3 gunicorn processes): {memory_before:.0f} MB without streams, {memory_after:.0f} MB "
          f"with them ({(memory_after - memory_before) * 1024 / max(gauge, 1):.0f} KB a stream)")  # fmt: skip


if __name__ == "__main__":
    main()
