"""Every Redis key filterviz writes, in one table: its name, its type, what it holds and who writes it.

The names never change between releases: a running deployment's jobs, queues and cache live under them.
Keys that end in ":" are prefixes, completed by what the comment says; functions build the per-job
and per-unit keys.
"""

# --- jobs: the record and its moves (shared/jobs.py; moved by shared/lifecycle.py) ----------------
JOB_LIST = "filterviz:jobs"  # sorted set: every job id -> created at (listing, retention)
LIVE_JOBS = "filterviz:live"  # set: ids of jobs not ended yet (the sweep walks it)
JOB = "filterviz:job:"  # + id: hash (status, spec, timestamps, deadline, error); its parts add
#   :progress (hash: chunk -> filters done, "cached" -> hits), :units (hash: starts:<unit>, plan:<chunk>,
#   client, filter_gflop, priority), :done (set: chunks whose record is stored), :queued (list: chunks
#   not yet sent to the broker), :events (stream: its moves, progress, stored filters and frames, capped:
#   shared/job_events.py). They expire together (shared/jobs.py JobKeys).
FRAME_SLOT = "filterviz:frame-slot:"  # + job id: string, with a TTL in ms: the job's next frame waits for it
OWNER_JOBS = "filterviz:jobs:owner:"  # + token name: sorted set of that owner's jobs, beside JOB_LIST


def lease_key(job_id: str, unit: str) -> str:
    """string, with a TTL: the token of the process running the unit (shared/lifecycle.py)."""
    return f"filterviz:lease:{job_id}:{unit}"


def pending_key(job_id: str, unit: str) -> str:
    """string, with a TTL: the unit was sent again and is not to be sent again before it lapses."""
    return f"filterviz:pending:{job_id}:{unit}"


SWEEP_LOCK = "filterviz:sweep-lock"  # string, with a TTL: the worker sweeping this period

# --- deliveries and workers (shared/deliveries.py, shared/workers.py) ------------------------------
RECEIVED = "filterviz:received"  # hash: <job>:<unit> -> {"receiver", "at"}: a worker took its message
HOLDINGS = "filterviz:holdings:"  # + receiver: {"held": [<job>:<unit>, ...], "at"}, lapses with it
WORKERS = "filterviz:workers"  # sorted set: worker name -> its last heartbeat
WORKER = "filterviz:worker:"  # + name: its heartbeat (JSON), lapsing LIVE_SECONDS after the last

# --- fair dispatch (shared/scheduling.py) ----------------------------------------------------------
SCHED_CLIENTS = "filterviz:sched:clients"  # sorted set: client with queued chunks -> GFLOP given
IN_FLIGHT = "filterviz:sched:in-flight"  # sorted set: <job>:<chunk> sent to the broker -> when
VIRTUAL_TIME = "filterviz:sched:vtime"  # string: the score of the client served last
CLIENT_JOBS = "filterviz:sched:client:"  # + client: list of its job ids with queued chunks, in turn
SERVED = "filterviz:sched:served:"  # + client: its score while it has nothing queued
RECENT_SECONDS = "filterviz:sched:recent-seconds"  # list: seconds the last done chunks held a slot

# --- the result cache (shared/cache.py) ------------------------------------------------------------
CACHE_INDEX = "filterviz:cache:"  # + entry hash: the filter's outcome (JSON), with a TTL
AGREED_WEIGHTS = "filterviz:cache:agreed-weights"  # string: the weights the live workers last agreed on

# --- the API's admission and access (api/) ---------------------------------------------------------
ACTIVE_JOBS = "filterviz:admission:active"  # sorted set (and + ":" + client): unfinished jobs -> when
# --- units on demand (api/units.py) ----------------------------------------------------------------
ON_DEMAND_JOB = "filterviz:units:job:"  # + unit hash: string, with a TTL: the job rendering (or that rendered) it
ON_DEMAND_VISITOR = "filterviz:units:visitor:"  # + visitor: set of the on-demand jobs it started, with a TTL
RATE_LIMITS = "filterviz:rate"  # flask-limiter's prefix: submissions per client and window
FAILED_AUTH = "filterviz:failed-auth"  # the limits library's namespace: wrong tokens per address

# --- webhooks (worker/webhook_slots.py) ------------------------------------------------------------
WEBHOOK_SLOTS = "filterviz:webhooks:owner"  # + ":<owner>:<slot>": a lock per delivery in progress
