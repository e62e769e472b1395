"""Groups of settings that some processes read alone, without the whole Settings: gunicorn's config
file (as gunicorn loads it), the Keras backend (before keras is imported), and whether a stack is
exposed (also in the secrets one-shot, which writes the files Settings reads).

A group read alone (`ApiServerSettings.from_environment()`) costs only its own fields; Settings
(shared/settings.py) takes every group in, so it still reads every variable of the service.
"""

from typing import Literal

from pydantic import AliasChoices, Field

from shared.cpus import available_cpus
from shared.environment import EnvironmentSettings


class ApiServerSettings(EnvironmentSettings):
    """How gunicorn serves the API (api/gunicorn_conf.py)."""

    # Where gunicorn listens: host:port, unix:PATH or fd://N (a space is a typo, not an address).
    api_bind: str = Field("0.0.0.0:8000", pattern=r"^\S+$", validation_alias="FILTERVIZ_API_BIND")
    # One process per CPU this container may use (its quota, not the host's cores).
    api_workers: int = Field(default_factory=available_cpus, ge=1, validation_alias="FILTERVIZ_API_WORKERS")
    # Threads per process: they wait on Redis and S3, slow clients and open event streams (half of them
    # by default, FILTERVIZ_EVENT_STREAMS), not on the CPU.
    api_threads: int = Field(16, ge=2, validation_alias="FILTERVIZ_API_THREADS")
    # Log lines as JSON objects (with the job id and chunk) instead of text, the workers' too: `json` or `text`.
    log_format: str = Field("text", pattern="^(text|json)$", validation_alias="FILTERVIZ_LOG_FORMAT")


class BackendSettings(EnvironmentSettings):
    """The Keras backend of workers and the CLI (worker/engine/backend.py): Keras reads KERAS_BACKEND
    once, when it is first imported, so this is read before."""

    # FILTERVIZ_BACKEND wins; KERAS_BACKEND, Keras' own, is taken when it is unset.
    backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", validation_alias=AliasChoices("FILTERVIZ_BACKEND", "KERAS_BACKEND")
    )


class ExposureSettings(EnvironmentSettings):
    """Whether others can reach the stack (provision/default_secrets.py refuses a documented default then)."""

    # compose: the address its published ports listen on (it passes this in); unset elsewhere.
    bind_addr: str | None = Field(None, pattern=r"^\S+$", validation_alias="FILTERVIZ_BIND_ADDR")
