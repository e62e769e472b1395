"""The per-filter result cache: one filter's picture and outcome, stored once under a hash of all that made it.

Key: the sha256 of the canonical JSON of PIXELS_VERSION, the model, the weights identity (the
job's `weights`: imagenet:<sha256>, random:<seed>, file:<sha256>), the method and every parameter
(defaults filled in), the layer, image_size, steps, step_size, seed and the filter index. The
starting noise and the draws of a filter depend on (seed, filter) alone (worker/engine/core.py),
so a filter's picture is the same whichever job or batch rendered it. Different weights give
different keys: entries are never shared across weights.

Where it lives:
- the pictures and outcomes in the bucket, content-addressed: cache/<hash>.png and cache/<hash>.json
  ({index, loss, dead, revived} and the key's fields), written by the worker that rendered them;
- an index in Redis, filterviz:cache:<hash> -> the outcome JSON, so that the API looks up a job's
  filters in one MGET at submission. Each hit renews the entry's lifetime (FILTERVIZ_CACHE_DAYS).

A job refers to its hits (jobs/<id>/cached.json), and its manifest marks them (`cache` per filter);
only the filters it misses become chunks. The index can outlive an object (a bucket restored, a
lifecycle rule, a cleanup by hand): a hit counts only once its picture is found in the bucket
(`still_stored`, at submission), and one that vanished before the finish is rendered there again
(worker/tasks.py). Either way its stale index entry is dropped, and the rendering refills it.
`"cache": false` in a request reads nothing from the cache; its freshly rendered filters still
replace their entries (a way to refresh a doubtful one).

Retention (shared/retention.py): an entry unused for FILTERVIZ_CACHE_DAYS loses its index key; the
sweep then deletes its objects once they are that old, unless a job still refers to them.
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from shared import objectives
from shared.keys import AGREED_WEIGHTS, CACHE_INDEX
from shared.manifest import filter_file
from shared.models import DEFAULT_MODEL
from shared.spec import JobSpec
from shared.storage import TRANSFERS, Storage, Upload, job_key
from shared.workers import live_workers

# Bump when the engine's output changes for the same key (worker/engine, worker/imaging, shared/pictures):
# old entries then miss, and age out.
PIXELS_VERSION = 1
CACHE_PREFIX = "cache/"
# A job's hits: [{index, loss, dead, revived, cache: <hash>}], beside its chunk records.
CACHED_FILE = "cached.json"
# Where a job's progress counts its hits (beside one field per chunk: shared/jobs.py).
HITS_PROGRESS = "cached"


def entry_hash(spec: JobSpec, weights: str, index: int) -> str:
    """The content address of filter `index` of `spec` rendered with `weights`."""
    key = {
        "pixels_version": PIXELS_VERSION,
        "model": spec.model,
        "weights": weights,
        "method": spec.method,
        "method_params": spec.method_params,
        "layer": spec.layer,
        "image_size": spec.image_size,
        "steps": spec.steps,
        "step_size": spec.step_size,
        "seed": spec.seed,
        "filter": index,
    }
    objective = spec.objective_terms
    if not objectives.is_default(objective):  # the channel mean alone keeps the keys it always had
        key["objective"] = objective
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def grid_keys(spec: JobSpec, weights: str, order: Sequence[int]) -> tuple[str, str]:
    """Bucket keys of the cached grid and thumbnail of these filters in this order: an identical request
    copies them instead of stitching again."""
    cells = [entry_hash(spec, weights, index) for index in order]
    layout = json.dumps([cells, spec.grid.n, spec.grid.margin, spec.image_size], separators=(",", ":"))
    digest = hashlib.sha256(layout.encode()).hexdigest()
    return f"{CACHE_PREFIX}grid-{digest}.png", f"{CACHE_PREFIX}grid-{digest}.thumbnail.png"


def picture_key(digest: str) -> str:
    """Bucket key of a cached picture."""
    return f"{CACHE_PREFIX}{digest}.png"


def outcome_key(digest: str) -> str:
    """Bucket key of a cached outcome (loss, dead, revived)."""
    return f"{CACHE_PREFIX}{digest}.json"


def cache_seconds(settings: Any) -> int:
    """How long an unused entry lives: FILTERVIZ_CACHE_DAYS, and always longer than a job refers to it."""
    return max(settings.cache_days, settings.job_record_days + 1) * 86400


def weights_for_lookup(db: redis.Redis, configured: str, model: str = DEFAULT_MODEL) -> str | None:
    """Which weights the API keys a lookup for `model` by: VGG16's identity (`_vgg16_weights`), or for
    another model the same where it is seeded random weights (random:<seed> names every model's); None
    (no lookup) otherwise: workers publish VGG16's identity only."""
    found = _vgg16_weights(db, configured)
    if model != DEFAULT_MODEL and found is not None and not found.startswith("random:"):
        return None
    return found


def _vgg16_weights(db: redis.Redis, configured: str) -> str | None:
    """The one identity every live worker publishes
    (recorded as the last agreed); with no worker live, FILTERVIZ_WEIGHTS when it names its identity
    itself (random:<seed>, at FILTERVIZ_PRECISION), else the last agreed; None (no lookup) when live
    workers disagree."""
    live = {worker.get("weights") for worker in live_workers(db)}
    agreed = next(iter(live)) if len(live) == 1 else None
    if agreed is not None:
        db.set(AGREED_WEIGHTS, agreed)
        return agreed
    if live:
        return None
    if configured.startswith("random:"):
        return configured
    last = db.get(AGREED_WEIGHTS)
    return last.decode() if last else None


def lookup(db: redis.Redis, spec: JobSpec, weights: str, ttl_seconds: int) -> dict[int, dict[str, Any]]:
    """The filters of `spec` the cache holds, as {index: {index, loss, dead, revived, cache}}; each hit's
    lifetime is renewed."""
    digests = [entry_hash(spec, weights, index) for index in spec.filters]
    found = db.mget([CACHE_INDEX + d for d in digests])
    hits = {
        index: {**json.loads(raw), "cache": digest}
        for index, digest, raw in zip(spec.filters, digests, found, strict=True)
        if raw is not None
    }
    if hits:
        with db.pipeline(transaction=False) as pipe:
            for entry in hits.values():
                pipe.expire(CACHE_INDEX + entry["cache"], ttl_seconds)
            pipe.execute()
    return hits


def still_stored(storage: Storage, db: redis.Redis, hits: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The hits whose picture is in the bucket; the index entries of the others are dropped (a miss)."""
    found = list(TRANSFERS.map(storage.exists, [picture_key(hit["cache"]) for hit in hits.values()]))
    gone = [hit["cache"] for hit, present in zip(hits.values(), found, strict=True) if not present]
    if gone:
        db.delete(*[CACHE_INDEX + digest for digest in gone])
    return {index: hit for (index, hit), present in zip(hits.items(), found, strict=True) if present}


def outcome(entry: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a manifest entry: index, loss, dead, revived."""
    return {"index": entry["index"], "loss": entry["loss"], "dead": entry["dead"], "revived": entry.get("revived")}


def store(
    storage: Storage, db: redis.Redis, spec: JobSpec, weights: str, rendered: Iterable[tuple[dict, bytes]],
    ttl_seconds: int, alongside: Iterable[Upload] = (),
) -> dict[int, str]:  # fmt: skip
    """Store freshly rendered filters (manifest entry, PNG) as entries: objects first, then the index
    (an index entry always has its objects). `alongside`: the caller's own objects, stored in the
    same round as the entries' (the job's copies). Returns {index: hash}."""
    uploads, index = list(alongside), {}
    for entry, png in rendered:
        digest = entry_hash(spec, weights, entry["index"])
        kept = outcome(entry)
        uploads.append((picture_key(digest), png, "image/png"))
        described = {**kept, "weights": weights, "pixels_version": PIXELS_VERSION, "spec": spec.model_dump(mode="json")}
        uploads.append((outcome_key(digest), json.dumps(described).encode(), "application/json"))
        index[digest] = kept
    storage.put_all(uploads)
    with db.pipeline(transaction=False) as pipe:
        for digest, kept in index.items():
            pipe.set(CACHE_INDEX + digest, json.dumps(kept), ex=ttl_seconds)
        pipe.execute()
    return {kept["index"]: digest for digest, kept in index.items()}


def job_hits(storage: Storage, job_id: str) -> dict[int, dict[str, Any]]:
    """The filters a job took from the cache, by index (none for a job without hits)."""
    stored = storage.get_json(job_key(job_id, CACHED_FILE))
    return {entry["index"]: entry for entry in stored["filters"]} if stored else {}


def record_hits(storage: Storage, job_id: str, hits: dict[int, dict[str, Any]]) -> None:
    """Write the job's reference to its hits (before its chunks are queued)."""
    storage.put_json(job_key(job_id, CACHED_FILE), {"filters": [hits[i] for i in sorted(hits)]})


def picture_of(job_id: str, index: int, hits: dict[int, dict[str, Any]]) -> str:
    """Bucket key of a job's filter picture: the cache's for a hit, the job's own otherwise."""
    return picture_key(hits[index]["cache"]) if index in hits else job_key(job_id, filter_file(index))


def referenced(storage: Storage) -> set[str]:
    """Every hash some job still refers to (for the retention sweep)."""
    keys = [key for key in storage.list_keys("jobs/") if key.endswith(f"/{CACHED_FILE}")]
    stored = list(TRANSFERS.map(storage.get_json, keys))
    return {entry["cache"] for record in stored if record for entry in record["filters"]}


def expire(db: redis.Redis, storage: Storage, ttl_seconds: int, now: float) -> int:
    """Delete the entries older than `ttl_seconds` whose index key lapsed (unused that long) and that no
    job refers to; the count deleted."""
    old: set[str] = set()
    for key, modified in storage.list_objects(CACHE_PREFIX):
        if modified.timestamp() < now - ttl_seconds:
            old.add(key.removeprefix(CACHE_PREFIX).split(".")[0])  # a grid has two objects: grid-<hash>.*
    if not old:
        return 0
    candidates = sorted(old - referenced(storage))
    indexed = db.mget([CACHE_INDEX + digest for digest in candidates]) if candidates else []
    doomed = [digest for digest, present in zip(candidates, indexed, strict=True) if present is None]
    for digest in doomed:
        storage.delete_prefix(f"{CACHE_PREFIX}{digest}.")
    return len(doomed)
