"""Settings from environment variables, with defaults that work for the local stack.

Each can also come from a file, `NAME_FILE=/path` (shared/environment.py): how compose hands services
the secrets it generates.
"""

from functools import cached_property
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from shared.cost import Budget
from shared.setting_groups import ApiServerSettings, BackendSettings, ExposureSettings
from shared.spec import Limits
from shared.webhook_signing import secret_bytes


class Settings(ApiServerSettings, BackendSettings, ExposureSettings):
    """Every variable the service reads (some through the groups it extends, shared/setting_groups.py);
    the README's configuration table lists the same names."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # Put into REDIS_URL when that names no password (compose passes it as REDIS_PASSWORD_FILE).
    redis_password: str | None = Field(None, validation_alias="REDIS_PASSWORD")
    s3_endpoint_url: str = Field("http://127.0.0.1:9000", validation_alias="S3_ENDPOINT_URL")
    # Presigned URLs are signed for this host (SigV4 signs the Host header): the one a browser can reach.
    s3_public_endpoint_url: str | None = Field(None, validation_alias="S3_PUBLIC_ENDPOINT_URL")
    s3_bucket: str = Field("filterviz", min_length=3, validation_alias="S3_BUCKET")
    s3_access_key_id: str = Field("filterviz", validation_alias="S3_ACCESS_KEY_ID")
    s3_secret_access_key: str = Field("filterviz-secret", validation_alias="S3_SECRET_ACCESS_KEY")
    s3_region: str = Field("us-east-1", validation_alias="S3_REGION")
    # The storage root's credentials: only the bucket init gets them, to make the app's user.
    s3_root_access_key_id: str | None = Field(None, validation_alias="S3_ROOT_ACCESS_KEY_ID")
    s3_root_secret_access_key: str | None = Field(None, validation_alias="S3_ROOT_SECRET_ACCESS_KEY")
    # Presigned URLs are bearer credentials for one object: at most an hour.
    presign_seconds: int = Field(3600, ge=60, le=3600, validation_alias="FILTERVIZ_PRESIGN_SECONDS")

    # Filters per Celery task: smaller chunks spread a job over more workers.
    chunk_size: int = Field(32, ge=1, validation_alias="FILTERVIZ_CHUNK_SIZE")
    # A chunk's hard time limit; the broker redelivers unacked chunks after visibility_timeout,
    # so that must be longer than any chunk can run.
    chunk_time_limit: int = Field(3600, ge=1, validation_alias="FILTERVIZ_CHUNK_TIME_LIMIT")
    visibility_timeout: int = Field(7200, ge=1, validation_alias="FILTERVIZ_VISIBILITY_TIMEOUT")
    # A running chunk yields at a batch boundary once it ran this long and another client's work
    # waits; batches are sized to end within it (worker/loading.py). 0: chunks never yield.
    fair_slice_seconds: float = Field(5.0, ge=0, validation_alias="FILTERVIZ_FAIR_SLICE_SECONDS")
    # Live frames of running chunks in each job's event stream (worker/frames.py), per job; 0: none.
    frames_per_second: float = Field(2.0, ge=0, le=10, validation_alias="FILTERVIZ_FRAMES_PER_SECOND")
    # Event streams (GET /v1/jobs/{id}/events) one API process holds open at once: each holds one of its
    # FILTERVIZ_API_THREADS, so fewer than those (unset: half of them; the rest answer polls).
    event_streams: int | None = Field(None, ge=1, validation_alias="FILTERVIZ_EVENT_STREAMS")
    job_record_days: int = Field(7, ge=1, validation_alias="FILTERVIZ_JOB_RECORD_DAYS")
    # The result cache (shared/cache.py): an entry unused this long is deleted (never while a job refers to it).
    cache_days: int = Field(30, ge=1, validation_alias="FILTERVIZ_CACHE_DAYS")

    # Reliability (see shared/lifecycle.py): a running chunk's lease lapses this long after its
    # worker's last heartbeat; the recovery sweep runs this often (one worker at a time).
    lease_seconds: int = Field(30, ge=5, validation_alias="FILTERVIZ_LEASE_SECONDS")
    sweep_seconds: int = Field(10, ge=1, validation_alias="FILTERVIZ_SWEEP_SECONDS")
    # A worker's pool process that has not loaded its network and reached Redis and S3 this long after
    # it was forked has hung: it shows its threads' stacks and the worker exits non-zero.
    start_seconds: int = Field(300, ge=1, validation_alias="FILTERVIZ_START_SECONDS")
    # Starts of one chunk that ended without a result before its job fails (chunk_failed_repeatedly).
    max_attempts: int = Field(3, ge=1, validation_alias="FILTERVIZ_MAX_ATTEMPTS")
    # A job fails (deadline_exceeded) this long after it was submitted; 0 derives it from its cost.
    job_deadline_seconds: int = Field(0, ge=0, validation_alias="FILTERVIZ_JOB_DEADLINE_SECONDS")
    # How long workers keep retrying S3 and Redis connection errors, with backoff and jitter.
    retry_seconds: int = Field(150, ge=0, validation_alias="FILTERVIZ_RETRY_SECONDS")
    # On a cold shutdown (SIGQUIT) running chunks get this long to give themselves back.
    stop_grace_seconds: int = Field(30, ge=0, validation_alias="FILTERVIZ_STOP_GRACE_SECONDS")
    max_body_bytes: int = Field(64 * 1024, ge=1024, validation_alias="FILTERVIZ_MAX_BODY_BYTES")

    # Which weights workers and the CLI load: imagenet, random:<seed>, or a file path.
    weights: str = Field("imagenet", validation_alias="FILTERVIZ_WEIGHTS")
    imagenet_weights: str | None = Field(None, validation_alias="FILTERVIZ_IMAGENET_WEIGHTS")
    # Where `make up`, `filterviz render` and `filterviz weights fetch` download a missing ImageNet
    # file from, and its md5 or sha256 (unset: Keras' own URL and hash, worker/weights_fetch.py).
    weights_url: str | None = Field(None, validation_alias="FILTERVIZ_WEIGHTS_URL")
    weights_hash: str | None = Field(None, validation_alias="FILTERVIZ_WEIGHTS_HASH")
    # 0 picks the largest batch that fits batch_memory_mb (default 1 GiB on CPU, half the card on a GPU).
    batch_size: int = Field(0, ge=0, validation_alias="FILTERVIZ_BATCH_SIZE")
    batch_memory_mb: int = Field(0, ge=0, validation_alias="FILTERVIZ_BATCH_MEMORY_MB")

    # TensorFlow threads per worker process (0: the CPUs it may use, a container's CPU quota
    # included); 1 packs one worker per core.
    tf_threads: int = Field(0, ge=0, validation_alias="FILTERVIZ_TF_THREADS")
    # The weights a worker keeps loaded, all models together (float32 parameters: VGG16's are 57 MB,
    # ConvNeXt Tiny's 107 MB); past it, the least recently used model is dropped (worker/loading.py).
    model_memory_mb: int = Field(1024, ge=64, validation_alias="FILTERVIZ_MODEL_MEMORY_MB")
    # The largest weights file POST /v1/models takes (ConvNeXt Tiny's no-top weights are 107 MB).
    model_upload_mb: int = Field(256, ge=1, validation_alias="FILTERVIZ_MODEL_UPLOAD_MB")
    # What the network computes in (worker/engine/precision.py): float32, bfloat16 or float16 (mixed:
    # the image and its update stay float32), or auto (bfloat16 where the CPU or GPU has it natively).
    precision: str = Field(
        "float32", pattern="^(float32|bfloat16|float16|auto)$", validation_alias="FILTERVIZ_PRECISION"
    )
    # The API's gauges read from Redis (jobs by status, queues, workers, the backlog) are this old at most:
    # a scrape reads Redis once per API process and period, however many scrapers ask.
    metrics_cache_seconds: float = Field(5.0, ge=0, le=60, validation_alias="FILTERVIZ_METRICS_CACHE_SECONDS")
    # A worker's Prometheus metrics on this port (0: none); compose sets 9808.
    worker_metrics_port: int = Field(0, ge=0, le=65535, validation_alias="FILTERVIZ_WORKER_METRICS_PORT")
    # How a worker names itself in leases, heartbeats and manifests, with its pid (worker/process.py); the
    # host name when unset. No `|`: it ends the holder in a lease's token (shared/lifecycle.py).
    worker_name: str | None = Field(None, pattern=r"^[^\s|]+$", validation_alias="FILTERVIZ_WORKER_NAME")

    # Webhooks (shared/webhooks.py): the signing secret (Standard Webhooks' whsec_ and base64);
    # unset, requests with a webhook are refused. Deliveries are tried this many times, the
    # n-th retry after up to retry_seconds * 2^n (jitter), at most an hour apart.
    webhook_secret: str | None = Field(None, validation_alias="FILTERVIZ_WEBHOOK_SECRET")
    webhook_allow_private: bool = Field(False, validation_alias="FILTERVIZ_WEBHOOK_ALLOW_PRIVATE")
    webhook_max_attempts: int = Field(10, ge=1, validation_alias="FILTERVIZ_WEBHOOK_MAX_ATTEMPTS")
    webhook_retry_seconds: int = Field(5, ge=1, validation_alias="FILTERVIZ_WEBHOOK_RETRY_SECONDS")
    # One delivery attempt ends this long after it starts, whatever the receiver does (connect, send,
    # the status line and headers; the body is never read).
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, validation_alias="FILTERVIZ_WEBHOOK_TIMEOUT_SECONDS")
    # Ports a webhook URL may name (comma-separated), or `any`.
    webhook_ports: str = Field(
        "80,443", pattern=r"^(any|\d{1,5}(,\d{1,5})*)$", validation_alias="FILTERVIZ_WEBHOOK_PORTS"
    )
    # Deliveries of one owner's webhooks under way at once (in all the webhook workers): a tenant's slow
    # receiver holds at most this many of the delivery threads.
    webhook_owner_concurrency: int = Field(2, ge=1, validation_alias="FILTERVIZ_WEBHOOK_OWNER_CONCURRENCY")

    max_filters: int = Field(512, ge=1, validation_alias="FILTERVIZ_MAX_FILTERS")
    max_image_size: int = Field(512, ge=16, validation_alias="FILTERVIZ_MAX_IMAGE_SIZE")
    max_steps: int = Field(200, ge=1, validation_alias="FILTERVIZ_MAX_STEPS")
    max_grid_n: int = Field(16, ge=1, validation_alias="FILTERVIZ_MAX_GRID_N")
    max_grid_side: int = Field(4096, ge=16, validation_alias="FILTERVIZ_MAX_GRID_SIDE")

    # The cost model (shared/cost.py): a job's FLOPs are checked against a budget that, by default,
    # one worker of this class gets through within one chunk time limit (with headroom).
    worker_gflops: float = Field(80.0, gt=0, validation_alias="FILTERVIZ_WORKER_GFLOPS")
    job_budget_tflop: float = Field(0.0, ge=0, validation_alias="FILTERVIZ_JOB_BUDGET_TFLOP")
    max_output_mb: int = Field(512, ge=1, validation_alias="FILTERVIZ_MAX_OUTPUT_MB")

    # Admission: unfinished jobs, in all and per client (address), and submissions per client.
    max_active_jobs: int = Field(200, ge=1, validation_alias="FILTERVIZ_MAX_ACTIVE_JOBS")
    max_active_jobs_per_client: int = Field(10, ge=1, validation_alias="FILTERVIZ_MAX_ACTIVE_JOBS_PER_CLIENT")
    # flask-limiter's notation, e.g. "120 per minute"; "off" turns the rate limit off.
    submit_rate_limit: str = Field("120 per minute", validation_alias="FILTERVIZ_SUBMIT_RATE_LIMIT")
    # Weights uploads per client (POST /v1/models): each may be FILTERVIZ_MODEL_UPLOAD_MB of storage.
    upload_rate_limit: str = Field("20 per hour", validation_alias="FILTERVIZ_UPLOAD_RATE_LIMIT")
    # Units rendered on demand (GET /v1/units/...png): asked per visitor and minute, and in flight at once.
    unit_rate_limit: str = Field("120 per minute", validation_alias="FILTERVIZ_UNIT_RATE_LIMIT")
    unit_renders_per_visitor: int = Field(4, ge=1, validation_alias="FILTERVIZ_UNIT_RENDERS_PER_VISITOR")

    # Access (api/auth.py): a file of `<name> <user|admin> <sha256 hex>` lines turns bearer tokens on;
    # unset, the API is open (the local stack).
    api_tokens_file: str | None = Field(None, validation_alias="FILTERVIZ_API_TOKENS_FILE")
    # In Kubernetes the API refuses to start without tokens unless this says it may (api/auth.py).
    allow_no_tokens: bool = Field(False, validation_alias="FILTERVIZ_ALLOW_NO_TOKENS")
    # Requests with a wrong token from one address (flask-limiter's notation); past it, 429. "off": no limit.
    failed_auth_limit: str = Field("20 per minute", validation_alias="FILTERVIZ_FAILED_AUTH_LIMIT")
    # Host names the API answers to (comma-separated; `.example.org` takes its subdomains too), or `*`:
    # a page on another site can't reach it through DNS rebinding.
    allowed_hosts: str = Field("localhost,127.0.0.1,api", validation_alias="FILTERVIZ_ALLOWED_HOSTS")

    @model_validator(mode="after")
    def _password_in_redis_url(self) -> "Settings":
        url = urlsplit(self.redis_url)
        if self.redis_password and url.password is None:
            user = quote(url.username, safe="") if url.username else ""
            host = url.netloc.rsplit("@", 1)[-1]
            self.redis_url = urlunsplit(url._replace(netloc=f"{user}:{quote(self.redis_password, safe='')}@{host}"))
        return self

    @model_validator(mode="after")
    def _threads_left_for_polls(self) -> "Settings":
        if self.event_streams is not None and self.event_streams >= self.api_threads:
            raise ValueError(
                f"FILTERVIZ_EVENT_STREAMS ({self.event_streams}) must be below FILTERVIZ_API_THREADS "
                f"({self.api_threads}): each open stream holds a thread, and polls need some left"
            )
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_decodes(cls, secret: str | None) -> str | None:
        if secret is not None:
            secret_bytes(secret)  # a bad secret stops the start, not every delivery
        return secret

    @property
    def event_stream_slots(self) -> int:
        """The event streams one API process holds open at once: FILTERVIZ_EVENT_STREAMS, or half its threads."""
        return self.event_streams or max(1, self.api_threads // 2)

    @property
    def webhook_port_list(self) -> frozenset[int] | None:
        """The ports a webhook may name; None: any."""
        return None if self.webhook_ports == "any" else frozenset(int(port) for port in self.webhook_ports.split(","))

    @property
    def trusted_hosts(self) -> list[str] | None:
        """The Host names the API answers to; None: any."""
        hosts = [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]
        return None if "*" in hosts else hosts

    @cached_property
    def budget(self) -> Budget:
        """What one job may cost on the configured worker class."""
        return Budget.for_workers(self.worker_gflops, self.chunk_time_limit, self.job_budget_tflop, self.max_output_mb)

    @cached_property
    def limits(self) -> Limits:
        """The request limits a job spec is validated against."""
        return Limits(
            max_filters=self.max_filters,
            max_image_size=self.max_image_size,
            max_steps=self.max_steps,
            max_grid_n=self.max_grid_n,
            max_grid_side=self.max_grid_side,
        )
