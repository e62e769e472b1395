"""The API's side of the result cache (shared/cache.py): look a request's filters up at submission
(shared/lifecycle.py's `submit` binds the job to them, and finishes at once a job whose every filter
was a hit)."""

from dataclasses import dataclass, field
from typing import Any

from api.services import Services
from shared import cache
from shared.numerics import numerics_identity
from shared.spec import JobSpec
from shared.uploads import upload_identity, upload_of


@dataclass(frozen=True)
class Cached:
    """The filters of a request the cache holds, and the weights they were looked up under."""

    weights: str | None = None
    hits: dict[int, dict[str, Any]] = field(default_factory=dict)


def cached_filters(services: Services, spec: JobSpec) -> Cached:
    """The request's cache hits whose pictures are in the bucket; none when it asks for `"cache": false`
    or the weights are not known (live workers disagree, or none is live and none ever agreed)."""
    if not spec.cache:
        return Cached()
    redis = services.jobs.redis
    # An upload's identity is its content's (shared/uploads.py): uploaded weights, or a whole model.
    upload = upload_of(spec.model, spec.weights)
    if upload is not None:
        weights: str | None = numerics_identity(upload_identity(upload), services.settings.precision)
    else:
        configured = numerics_identity(services.settings.weights, services.settings.precision)
        weights = cache.weights_for_lookup(redis, configured, spec.model)
    if weights is None:
        return Cached()
    hits = cache.lookup(redis, spec, weights, cache.cache_seconds(services.settings))
    return Cached(weights, cache.still_stored(services.storage, redis, hits) if hits else {})
