"""The finish's grid: pictures the finishing task rendered itself are used as they are, not read back."""

import numpy as np

from shared.cache import entry_hash, picture_key
from shared.finish import stitch, write_results
from shared.jobs import Job
from shared.manifest import filter_file
from shared.pictures import encode_png
from shared.spec import parse_spec
from shared.storage import job_key
from tests.fakes import MemoryStorage

SIZE = 16


def _job(job_id: str = "j1") -> Job:
    spec = parse_spec({"filters": [0, 1, 2], "image_size": SIZE, "grid": {"n": 2, "margin": 1}, "seed": 5})
    return Job(job_id, "running", spec, None, "t0", "t1", None, None, 0, 1, None)


def _picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.copies: list[str] = []

    def get(self, key: str) -> bytes | None:
        self.reads.append(key)
        return super().get(key)

    def copy(self, source: str, key: str) -> bool:
        self.copies.append(source)
        return super().copy(source, key)


def test_pictures_in_hand_are_not_read_back_and_make_the_same_grid():
    job, storage = _job(), CountingStorage()
    entries = [{"index": index, "loss": float(index), "dead": False} for index in job.spec.filters]
    for index in job.spec.filters:
        storage.put(job_key(job.id, filter_file(index)), encode_png(_picture(index)), "image/png")

    order, from_storage = stitch(storage, job, entries, {})
    assert sorted(storage.reads) == sorted(job_key(job.id, filter_file(index)) for index in order)

    storage.reads.clear()
    _, with_two_in_hand = stitch(storage, job, entries, {}, in_hand={1: _picture(1), 2: _picture(2)})
    assert storage.reads == [job_key(job.id, filter_file(0))]
    assert with_two_in_hand == from_storage


def test_a_grid_is_kept_and_copied_only_once_its_filters_repeat():
    job, storage = _job(), CountingStorage()
    entries = [{"index": index, "loss": float(index), "dead": False} for index in job.spec.filters]
    for index in job.spec.filters:
        picture = encode_png(_picture(index))
        storage.put(job_key(job.id, filter_file(index)), picture, "image/png")
        storage.put(picture_key(entry_hash(job.spec, "random:1", index)), picture, "image/png")
    finish = {"weights": "random:1", "timings": {}, "runtime": {}}
    # Every picture just rendered: the grid is stitched, and neither asked for nor kept.
    assert write_results(storage, job, entries=entries, hits={}, **finish)
    assert storage.copies == [] and len(storage.reads) == 3
    assert not [key for key in storage.objects if key.startswith("cache/grid-")]
    grid = storage.objects[job_key(job.id, "grid.png")]
    # The same filters again, from the cache: stitched from the cache's pictures, and now kept.
    hits = {e["index"]: {**e, "cache": entry_hash(job.spec, "random:1", e["index"])} for e in entries}
    assert write_results(storage, _job("j2"), entries=[], hits=hits, **finish)
    assert len(storage.copies) == 2 and len([key for key in storage.objects if key.startswith("cache/grid-")]) == 2
    # And once more: the kept grid is copied, nothing stitched.
    storage.reads.clear()
    assert write_results(storage, _job("j3"), entries=[], hits=hits, **finish)
    assert len(storage.copies) == 4 and storage.reads == []
    assert storage.objects[job_key("j2", "grid.png")] == storage.objects[job_key("j3", "grid.png")] == grid
