"""Fair dispatch: which chunk goes to the broker next, so that a small job never waits behind a big one.

The broker (one FIFO Celery queue) holds only as many chunks as there are worker processes to run
them: its *slots*, counted from the workers' heartbeats (shared/workers.py). Every other chunk waits
in Redis, in its job's `queued` list, and a chunk is sent only when a slot frees: when a chunk is
done, when its job ends, when the sweep finds a slot leaked, when a worker starts. So a job
submitted now waits for at most one running chunk per worker, not for every chunk queued before it.

Which chunk, when a slot frees: fair share across clients, round robin across a client's jobs.
- A client is who submitted (api/admission.py `client_identity`: the token, else the address).
- Clients are served by start-time fair queuing (the virtual-time form of deficit round robin,
  as in Slurm's fair-share and Kubernetes' API priority and fairness): each client with queued
  work has a score, the compute (GFLOP) it was given; the lowest score goes next and is charged
  its chunk's cost. A client that joins starts at the score of the last chunk sent (never below
  its own past score), so it goes next, but an idle spell earns it no credit to hoard.
- A client's jobs take turns, one chunk each (a list rotated at each pick); a new job goes first.
- Priority (the request's `priority`, -3..3, default 0) is a weight, not a queue jump: a chunk of
  priority p charges its client cost x 2^-p. A priority-2 job's client thus gets four times the
  share of a client at 0 while both have work, and the others still get theirs: a strict "higher
  first" would let one urgent big job hold every worker, the very thing this dispatch prevents
  (Slurm's fair-share weights and Kubernetes APF's shares work the same way). Raising it (p > 0)
  is for admin tokens only (api/access.py `check_priority`); anyone may lower it, to run a job in
  the background of their own and others' work.

Position (`queue_position`, for a queued job's resource): how many chunks will be sent before the
job's next one (0 once one of its chunks is sent: a worker takes it next), by replaying fair share
on the scores (one Lua read over the in-flight set, one member a worker process, and the clients
with queued work and their jobs, which admission bounds: no simulation chunk by chunk), and an
estimated start from the seconds recent chunks held their slot (RECENT_SECONDS, the last
RECENT_KEPT done chunks) and the number of slots. Chunks are cut to about the same compute
(shared/cost.py), so chunks ahead times a chunk's seconds over the slots is a fair guess; it
ignores jobs submitted meanwhile.

Why this and not the alternatives: Celery priorities on Redis are a few lists polled in order and
prefetching blurs them; queues by cost starve big jobs, and don't separate clients. A pick is one
Lua script, so API processes and workers can all dispatch at once without a dispatcher process
that must run exactly once (the recovery sweep's reasoning, shared/lifecycle.py). The scripts
build per-client and per-job key names, so this wants a single Redis (not Redis Cluster).

Every chunk of a live job is in exactly one place, each move atomic: its job's `queued` list ->
the in-flight set (sent, or running; a member `<job>:<chunk>` scored by when it was sent) -> the
job's done set. A chunk given back, or sent again by the sweep, keeps its in-flight member: its
place. How the lifecycle uses this (releases, the sweep's checks) is told in shared/lifecycle.py.
"""

import json
import statistics
import time
from dataclasses import dataclass
from typing import Protocol

import redis

from shared.jobs import FINISHED, JobStore, job_keys
from shared.keys import CLIENT_JOBS, IN_FLIGHT, RECENT_SECONDS, SCHED_CLIENTS, SERVED, VIRTUAL_TIME
from shared.workers import count_live

RECENT_KEPT = 20
# A client idle this long starts afresh (its past score no longer matters: it is below everyone's).
SERVED_SECONDS = 86400
_JOB = "{job}"

# Pick the next chunk when the in-flight set is below ARGV[1] slots; returns {job, chunk} or nil.
# Jobs that ended or vanished are dropped on the way.
_PICK = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return nil end
local finished = {}
for word in string.gmatch(ARGV[7], '%S+') do finished[word] = true end
local function key(template, job) return (string.gsub(template, '{job}', job)) end
while true do
  local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #top == 0 then return nil end
  local client, score = top[1], tonumber(top[2])
  local jobs = ARGV[5] .. client
  local job = redis.call('LPOP', jobs)
  local chunk = false
  if job then
    local queued = key(ARGV[3], job)
    local status = redis.call('HGET', key(ARGV[6], job), 'status')
    if status and not finished[status] then chunk = redis.call('LPOP', queued) else redis.call('DEL', queued) end
    if chunk and redis.call('LLEN', queued) > 0 then redis.call('RPUSH', jobs, job) end
  end
  local cost = 0
  if chunk then
    local plan = redis.call('HGET', key(ARGV[4], job), 'plan:' .. chunk)
    local filters = plan and #cjson.decode(plan) or 1
    local priority = tonumber(redis.call('HGET', key(ARGV[4], job), 'priority') or '0')
    cost = filters * tonumber(redis.call('HGET', key(ARGV[4], job), 'filter_gflop') or '1') * 2 ^ (-priority)
    redis.call('SET', KEYS[3], score)
    redis.call('ZADD', KEYS[2], ARGV[2], job .. ':' .. chunk)
  end
  if redis.call('LLEN', jobs) > 0 then
    redis.call('ZADD', KEYS[1], score + cost, client)
  else
    redis.call('ZREM', KEYS[1], client)
    redis.call('SET', ARGV[8] .. client, score + cost, 'EX', ARGV[9])
  end
  if chunk then return {job, chunk} end
end
"""
# How many chunks go before job ARGV[1]'s next one (0 once one is sent), or nil when none is queued
# or sent. Its client's score after the turns of the jobs before it in its list is the virtual time
# its chunk goes at; every other client below that sends chunks (at its jobs' mean charge) until it
# reaches it.
_POSITION = """
local function key(template, job) return (string.gsub(template, '{job}', job)) end
local function charge(job)
  local queued = key(ARGV[2], job)
  local head = redis.call('LINDEX', queued, 0)
  if not head then return nil, 0 end
  local units = key(ARGV[3], job)
  local plan = redis.call('HGET', units, 'plan:' .. head)
  local filters = plan and #cjson.decode(plan) or 1
  local gflop = tonumber(redis.call('HGET', units, 'filter_gflop') or '1')
  local priority = tonumber(redis.call('HGET', units, 'priority') or '0')
  return filters * gflop * 2 ^ (-priority), redis.call('LLEN', queued)
end
-- A chunk of it already sent (the slots: one per worker process) is at the door: nothing is ahead.
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.sub(member, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then return 0 end
end
local mine = redis.call('HGET', key(ARGV[3], ARGV[1]), 'client')
local score = mine and redis.call('ZSCORE', KEYS[1], mine)
if not score then return nil end
local ahead, at, found = 0, tonumber(score), false
for _, job in ipairs(redis.call('LRANGE', ARGV[4] .. mine, 0, -1)) do
  if job == ARGV[1] then found = true; break end
  local cost = charge(job)
  if cost then ahead = ahead + 1; at = at + cost end
end
if not found or not redis.call('LINDEX', key(ARGV[2], ARGV[1]), 0) then return nil end
local others = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #others, 2 do
  local client, own = others[i], tonumber(others[i + 1])
  -- at equal scores the sorted set serves the client whose name sorts first
  if client ~= mine and (own < at or (own == at and client < mine)) then
    local total, jobs, waiting = 0, 0, 0
    for _, job in ipairs(redis.call('LRANGE', ARGV[4] .. client, 0, -1)) do
      local cost, left = charge(job)
      if cost then total = total + cost; jobs = jobs + 1; waiting = waiting + left end
    end
    if jobs > 0 then
      local turns = (at - own) * jobs / total
      turns = client < mine and math.floor(turns) + 1 or math.ceil(turns)
      ahead = ahead + math.min(waiting, turns)
    end
  end
end
return ahead
"""
# Put job ARGV[1] in its client's turn (once; a new job first, so that a client's small job doesn't
# wait for a turn of each of its big ones), and the client among those served: at the score of
# the client served last, or its own past score if higher.
_JOIN = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('LPUSH', KEYS[1], ARGV[1]) end
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  local now = tonumber(redis.call('GET', KEYS[3]) or '0')
  local own = tonumber(redis.call('GET', KEYS[4]) or '0')
  redis.call('ZADD', KEYS[2], math.max(now, own), ARGV[2])
end
"""
# The chunks 0 .. ARGV[2]-1 of job ARGV[1] that are nowhere (not queued, in flight or done) go back
# to the front of its queue, in order; returns them. Not for a job whose chunks were never queued
# here (submitted before this dispatch existed, or whose submission is still under way).
_REQUEUE_LOST = """
local lost = {}
if redis.call('HEXISTS', KEYS[4], 'client') == 0 then return lost end
for i = 0, tonumber(ARGV[2]) - 1 do
  local name = tostring(i)
  if not redis.call('LPOS', KEYS[1], name) and not redis.call('ZSCORE', KEYS[2], ARGV[1] .. ':' .. name)
     and redis.call('SISMEMBER', KEYS[3], name) == 0 then
    table.insert(lost, name)
  end
end
for i = #lost, 1, -1 do redis.call('LPUSH', KEYS[1], lost[i]) end
return lost
"""

# A running chunk stops at a batch boundary to let another client in: it keeps the filters it
# finished (ARGV[2]); the rest (ARGV[3]) become the job's newest chunk, at the front of its queue,
# and what its client was charged for them is given back (ARGV[4], to its score, or to its score
# kept while it had nothing queued). Returns the new chunk's index.
_SPLIT = """
local index = redis.call('HINCRBY', KEYS[1], 'chunks', 1) - 1
redis.call('HSET', KEYS[2], 'plan:' .. ARGV[1], ARGV[2], 'plan:' .. index, ARGV[3])
redis.call('LPUSH', KEYS[3], index)
if redis.call('ZSCORE', KEYS[4], ARGV[5]) then
  redis.call('ZINCRBY', KEYS[4], -tonumber(ARGV[4]), ARGV[5])
else
  redis.call('SET', KEYS[5], tonumber(redis.call('GET', KEYS[5]) or '0') - tonumber(ARGV[4]), 'KEEPTTL')
end
return index
"""


class SendChunk(Protocol):
    """Sends one chunk to the broker (shared/celery_app.py's CeleryDispatch)."""

    def chunk(self, job_id: str, index: int, filters: list[int]) -> None: ...


def slots(db: redis.Redis) -> int:
    """How many chunks the broker may hold: one per live worker process (at least one, so that a
    deployment scaled to zero sees work waiting and starts a worker)."""
    return max(1, count_live(db))


def queued_chunks(db: redis.Redis) -> int:
    """Chunks waiting in Redis for a slot (not yet in the broker): for metrics and autoscaling."""
    job_ids = [j for c in db.zrange(SCHED_CLIENTS, 0, -1) for j in db.lrange(CLIENT_JOBS + c.decode(), 0, -1)]
    with db.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.llen(job_keys(job_id.decode()).queued)
        return sum(pipe.execute())


@dataclass(frozen=True)
class QueuePosition:
    """Where a queued job stands: chunks sent before its next one, and when that one may start."""

    chunks_ahead: int
    estimated_start_seconds: float | None  # None until a chunk has been done (nothing to go by)


def queue_position(db: redis.Redis, job_id: str, slice_seconds: float = 0.0) -> QueuePosition | None:
    """The job's place in fair dispatch, or None when none of its chunks waits or is sent (3 Redis calls).
    `slice_seconds`: FILTERVIZ_FAIR_SLICE_SECONDS, after which a running chunk yields to waiting work."""
    ahead = db.register_script(_POSITION)(
        keys=[SCHED_CLIENTS, IN_FLIGHT], args=[job_id, job_keys(_JOB).queued, job_keys(_JOB).units, CLIENT_JOBS]
    )
    if ahead is None:
        return None
    recent = [float(seconds) for seconds in db.lrange(RECENT_SECONDS, 0, -1)]
    if not recent:
        return QueuePosition(int(ahead), None)
    held = statistics.median(recent)
    if slice_seconds:
        # Chunks yield to waiting work once their slice is spent, at the end of a batch sized to the
        # slice: each running or ahead holds a slot about a slice (measured: 4.5 s waits, 5 s slices).
        seconds = (int(ahead) + 1) * min(held, slice_seconds) / slots(db)
    else:
        # The chunks ahead, then this one, each take a slot as one frees; those running are half done.
        seconds = (int(ahead) + 0.5) * held / slots(db)
    return QueuePosition(int(ahead), round(seconds, 1))


def chunk_backlog(db: redis.Redis) -> dict[str, int]:
    """The chunks that want a worker process: waiting in Redis, and sent (in the broker or running).

    What an autoscaler should read: never zero while a chunk is unfinished, so a job submitted while
    no worker exists brings one up (its first chunk is in the broker, the slot that `slots` keeps
    for that: the waiting chunks alone may be none), and a busy worker counts until its chunk ends."""
    waiting, sent = queued_chunks(db), db.zcard(IN_FLIGHT)
    return {"queued_chunks": waiting, "in_flight_chunks": sent, "chunks": waiting + sent}


class Scheduler:
    """The queued chunks of every job, and which of them the broker holds."""

    def __init__(self, jobs: JobStore, send: SendChunk) -> None:
        self._jobs = jobs
        self._redis = db = jobs.redis
        self._send = send
        self._pick = db.register_script(_PICK)
        self._join = db.register_script(_JOIN)
        self._requeue_lost = db.register_script(_REQUEUE_LOST)
        self._split = db.register_script(_SPLIT)

    def submit(self, job_id: str, client: str, chunks: list[list[int]], filter_flops: float, priority: int = 0) -> None:
        """Queue a new job's chunks (its record exists) for `client`, and send what free slots allow."""
        keys = job_keys(job_id)
        # Keyed str | bytes, as redis' stubs type a hash's fields.
        plans: dict[str | bytes, str] = {f"plan:{i}": json.dumps(list(filters)) for i, filters in enumerate(chunks)}
        with self._redis.pipeline() as pipe:
            pipe.hset(
                keys.units,
                mapping={**plans, "client": client, "filter_gflop": filter_flops / 1e9, "priority": priority},
            )
            pipe.rpush(keys.queued, *[str(i) for i in range(len(chunks))])
            self._jobs.touch(pipe, job_id)
            pipe.execute()
        self._enter(job_id, client)
        self.fill()

    def fill(self) -> int:
        """Send chunks while the broker has free slots, fairest first; how many were sent."""
        sent = 0
        capacity = slots(self._redis)
        while picked := self._pick(
            keys=[SCHED_CLIENTS, IN_FLIGHT, VIRTUAL_TIME],
            args=[capacity, time.time(), job_keys(_JOB).queued, job_keys(_JOB).units, CLIENT_JOBS,
                  job_keys(_JOB).record, " ".join(FINISHED), SERVED, SERVED_SECONDS],
        ):  # fmt: skip
            job_id, chunk = picked[0].decode(), int(picked[1])
            plan = self._redis.hget(job_keys(job_id).units, f"plan:{chunk}")
            if plan is None:  # the job's record expired or was deleted meanwhile
                self._redis.zrem(IN_FLIGHT, _member(job_id, str(chunk)))
                continue
            self._send.chunk(job_id, chunk, json.loads(plan))
            sent += 1
        return sent

    def release(self, job_id: str, chunk: str, done: bool = False) -> None:
        """The chunk left the broker for good (done, or its job ended): its slot goes to the next chunk.
        A done chunk's seconds in its slot join the recent ones (for estimated starts).

        Idempotent: a duplicate delivery releases nothing more."""
        member = _member(job_id, chunk)
        sent = self._redis.zscore(IN_FLIGHT, member)
        if self._redis.zrem(IN_FLIGHT, member):
            if done and sent is not None:
                with self._redis.pipeline(transaction=False) as pipe:
                    pipe.lpush(RECENT_SECONDS, round(time.time() - sent, 3))
                    pipe.ltrim(RECENT_SECONDS, 0, RECENT_KEPT - 1)
                    pipe.execute()
            self.fill()

    def drop(self, job_id: str) -> None:
        """The job ended: forget its queued chunks, and give its slots to others."""
        self._redis.delete(job_keys(job_id).queued)
        mine = [m for m, _ in self.in_flight() if split_member(m)[0] == job_id]
        if mine:
            self._redis.zrem(IN_FLIGHT, *mine)
        self.fill()

    def in_flight(self) -> list[tuple[str, float]]:
        """Members `<job>:<chunk>` the broker holds or a worker runs, with when each was sent."""
        return [(m.decode(), score) for m, score in self._redis.zrange(IN_FLIGHT, 0, -1, withscores=True)]

    def requeue_lost(self, jobs: dict[str, int]) -> dict[str, list[str]]:
        """Queue again the chunks of these jobs (id: chunks) that are nowhere (Redis lost a move), and make
        sure each job with chunks queued has its turn; the chunks queued again, by job. Two round trips
        for all of them (the recovery sweep's batch)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id, chunks in jobs.items():
                keys = job_keys(job_id)
                self._requeue_lost(keys=[keys.queued, IN_FLIGHT, keys.done, keys.units], args=[job_id, chunks],
                                   client=pipe)  # fmt: skip
                pipe.llen(keys.queued)
                pipe.hget(keys.units, "client")
            replies = pipe.execute()
        lost = {}
        with self._redis.pipeline(transaction=False) as pipe:
            for at, job_id in enumerate(jobs):
                requeued, queued, client = replies[3 * at : 3 * at + 3]
                lost[job_id] = [name.decode() for name in requeued]
                if queued:
                    self._enter(job_id, client.decode() if client else "unknown", pipe)
            pipe.execute()
        return lost

    def others_waiting(self, job_id: str) -> bool:
        """Another client than the job's has chunks queued."""
        mine = self._redis.hget(job_keys(job_id).units, "client")
        return any(client != mine for client in self._redis.zrange(SCHED_CLIENTS, 0, 1))

    def split(self, job_id: str, chunk: str, kept: list[int], rest: list[int]) -> int:
        """Chunk `chunk` keeps the filters `kept`; `rest` become the job's next chunk, first in its queue
        (it keeps its place), and its client gets back what it was charged for them. The new index."""
        keys = job_keys(job_id)
        found, gflop, priority = (v.decode() if v else None for v in self._redis.hmget(
            keys.units, "client", "filter_gflop", "priority"))  # fmt: skip
        client = found or "unknown"
        refund = len(rest) * float(gflop or 1) * 2 ** -int(priority or 0)
        index = self._split(
            keys=[keys.record, keys.units, keys.queued, SCHED_CLIENTS, SERVED + client],
            args=[chunk, json.dumps(kept), json.dumps(rest), refund, client],
        )
        self._enter(job_id, client)
        return int(index)

    def restamp(self, job_id: str, chunk: str) -> None:
        """The chunk was sent again now (by the sweep)."""
        self._redis.zadd(IN_FLIGHT, {_member(job_id, chunk): time.time()}, xx=True)

    def _enter(self, job_id: str, client: str, pipe: redis.client.Pipeline | None = None) -> None:
        self._join(keys=[CLIENT_JOBS + client, SCHED_CLIENTS, VIRTUAL_TIME, SERVED + client], args=[job_id, client],
                   client=pipe)  # fmt: skip


def split_member(member: str) -> tuple[str, str]:
    """A member of the in-flight set as (job id, chunk)."""
    job_id, _, chunk = member.rpartition(":")
    return job_id, chunk


def _member(job_id: str, chunk: str) -> str:
    return f"{job_id}:{chunk}"
