"""Fakes for unit tests of the lifecycle and the scheduler, which run on a real throwaway Valkey
(tests/conftest.py's `jobs`) but need no broker, worker or S3 server."""

from datetime import UTC, datetime

from shared.settings import Settings
from shared.storage import Storage


class Sent:
    """A Dispatch that records what would go to the broker."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, int]] = []
        self.finishes: list[str] = []
        self.taken: set[str] = set()  # messages a worker popped from the broker

    def chunk(self, job_id: str, index: int, filters: list[int]) -> None:
        self.chunks.append((job_id, index))
        self.taken.discard(f"{job_id}:{index}")

    def finish(self, job_id: str) -> None:
        self.finishes.append(job_id)

    def waiting(self) -> set[str]:
        return {f"{job_id}:{index}" for job_id, index in self.chunks} - self.taken


class Heard:
    """Events that keep what they hear: (job, status, code) per move."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str, str | None]] = []

    def moved(self, job_id: str, status: str, code: str | None = None) -> None:
        self.moves.append((job_id, status, code))

    def recovered(self, job_id: str, unit: str) -> None:
        """Not recorded."""


class MemoryStorage(Storage):
    """Storage in a dict: Storage's own logic over in-memory objects (its S3 client is never called)."""

    def __init__(self) -> None:
        super().__init__(Settings())
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def copy(self, source: str, key: str) -> bool:
        if source not in self.objects:
            return False
        self.objects[key] = self.objects[source]
        return True

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list_objects(self, prefix: str) -> list[tuple[str, datetime]]:
        return [(key, datetime.now(UTC)) for key in sorted(self.objects) if key.startswith(prefix)]

    def delete_prefix(self, prefix: str) -> int:
        keys = [key for key in self.objects if key.startswith(prefix)]
        for key in keys:
            del self.objects[key]
        return len(keys)
