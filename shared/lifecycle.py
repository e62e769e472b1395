"""How a job moves from submission to its end, and every way it can end.

    queued ──first unit starts──> running ──finish writes the manifest──> succeeded
       │                             │
       ├───────── cancel ────────────┴──> canceled
       └── deadline_exceeded, chunk_failed_repeatedly, storage_unavailable,
           render_failed, chunk_timeout, weights_mismatch, weights_unavailable, chunk_missing,
           picture_missing ──> failed

A job's work comes in units: its chunks (0, 1, ...) and the finish step ("finish"), each a
Celery task. A unit that is delivered to a worker goes through `begin`, then holds a *lease*
while it runs, and leaves by exactly one of:

- `chunk_done`: its record is stored; it joins the job's done set, and the chunk that completes
  the set runs the finish in the same task (its lease makes it once), or enqueues it (once:
  guarded by a pending marker set with SET NX);
- `yield_rest`, then `chunk_done`: it stopped at a batch boundary because another client's work
  waits and its fair slice is spent: it keeps the filters it finished, and the rest become the
  job's newest chunk, first in its queue (shared/scheduling.py);
- `finish_done`: the manifest is stored; running -> succeeded, an atomic transition that
  happens once however many finish tasks run;
- `stopped` early: given back (`give_back`) when the worker is stopping, enqueued again with the
  start not counted; or dropped because its job ended;
- `fail`: the job ends with a code and a message;
- dying: its lease lapses and the recovery sweep enqueues it again.

Leases (after BullMQ's job locks, Sidekiq's reliable fetch and RQ's StartedJobRegistry): a key
per running unit with a TTL of `lease_seconds`, which the worker's heartbeat thread renews every
second. A delivered unit whose lease is held *and fresh* is a duplicate (a broker redelivery, a
second sweep) and is skipped. A lease not renewed for STALE_SECONDS, or held by a process of the
same worker host that no longer exists, belongs to a dead process and is taken over: a chunk
whose pool process died runs again as soon as Celery redelivers it.

Attempts: each start counts. A unit started `max_attempts` times without a result fails its job
with `chunk_failed_repeatedly`, so a chunk that kills its process every time ends.

Completion exactly once, without a chord: a chunk's result is its record in storage, and the
done set in Redis says which records exist. Duplicates and late deliveries find their unit done
or held and do nothing; the finish checks every record in storage before it writes the manifest.

The recovery sweep runs in every worker, one at a time under a Redis lock that lapses after
`sweep_seconds`. Not in Celery beat: beat is one more process that must run exactly once per
deployment, and when it is down nothing recovers; the workers are there whenever there is
anyone to run the recovered work. This is BullMQ's choice too (every worker checks for stalled
jobs, under a lock). The sweep, for each live job:
- fails it with `deadline_exceeded` once its deadline has passed;
- for each unit that started, has no lease, no result and no pending re-delivery: takes its
  result from storage when the record is there (Redis lost the done mark), fails the job when the
  unit used its attempts, and otherwise enqueues it again;
- enqueues the finish when every chunk is done and no finish is running or pending.

Dispatch (shared/scheduling.py): a job's chunks wait in Redis, and the broker holds only one
chunk per worker process, picked fairly across clients and jobs, so a small job never waits behind
a big one. Every chunk of a live job is queued, in flight or done. A chunk leaves the in-flight
set, and its slot goes to the next chunk, exactly when it can't run any more:
- `chunk_done`; or a delivery that finds its chunk done or its job ended (`begin`);
- its job ends: `fail_job`, or a unit that stops for a job canceled or past its deadline (`stopped`);
- the sweep finds it in flight for a job that ended or vanished.
A chunk given back or sent again by the sweep keeps its slot (its place). The sweep also:
- queues again the chunks of a live job that are nowhere (Redis lost a move) and gives the job its turn;
- sends again a unit delivered to a worker that died, or dropped it in a Redis restart, before it
  began, as soon as the receiver's holdings beat says so (shared/deliveries.py);
- sends again a chunk sent over LOST_SECONDS ago that no worker received or began and that is not in
  the broker's queue (a worker died as it popped the message); and, whatever the broker says, one that
  has been in flight PENDING_SECONDS without starting;
- fills the free slots (a worker joined, a release was lost).

Units that never started are the broker's to deliver; the deadline ends a job whose messages
Redis lost and no sweep check finds.

A job whose every filter is in the result cache (shared/cache.py) has no chunks: `submit` moves it
queued -> running -> succeeded at once, in the API's request. Should it fail midway, the job is
running with every chunk (none) done, and the sweep enqueues its finish like any other.

This class is the one writer of a job's state: the API submits, cancels and deletes through it too
(`submit`, `cancel`, `delete`), and the workers run every other move.

Events: each move into running or an end is told once, by the process that made it, to `Events`
(the job's webhook: shared/webhooks.py), which only enqueues.
"""

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shared import cache, deliveries, job_events
from shared.cost import filter_flops
from shared.finish import write_results
from shared.job_events import EventStream
from shared.jobs import (
    CANCELED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobError,
    JobStore,
    job_keys,
    now,
)
from shared.keys import SWEEP_LOCK, lease_key, pending_key
from shared.numerics import WeightsUnavailable
from shared.retention import delete_job
from shared.scheduling import Scheduler, split_member
from shared.spec import JobSpec
from shared.storage import Storage, chunk_record_name, job_key

log = logging.getLogger(__name__)

FINISH = "finish"
# A lease not renewed for this long (heartbeats come every second) belongs to a dead process.
STALE_SECONDS = 5
# A unit enqueued by the sweep or a give-back is not enqueued again for this long unless it starts.
PENDING_SECONDS = 600
# A chunk sent this long ago that is not in the broker's queue, that no worker received and none began,
# was lost on its way: popped by a worker that died before it could record the message (the Redis
# transport acknowledges by hand, after the pop). It is sent again without waiting PENDING_SECONDS.
LOST_SECONDS = 10
# Live jobs the sweep reads in one round trip, and only what it needs of each (SweptJob): with a
# thousand jobs queued, reading each whole record (its spec parsed) one by one took a tenth of a worker.
SWEEP_BATCH = 100

# Take the lease of a unit: skip when the unit is done or its lease is fresh (unless its holder is
# ARGV[5], known dead); otherwise own it, count the start and clear the pending mark.
# Returns {'done'|'held'} or {'run', starts}.
_BEGIN = """
if ARGV[4] ~= 'finish' and redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then return {'done'} end
local left = redis.call('PTTL', KEYS[1])
local dead = ARGV[5] ~= '' and redis.call('GET', KEYS[1]) == ARGV[5]
if left > tonumber(ARGV[2]) - tonumber(ARGV[3]) and not dead then return {'held'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[4])
return {'run', redis.call('HINCRBY', KEYS[2], 'starts:' .. ARGV[4], 1)}
"""
# Renew a lease if it is still ours; returns {ours, job status, deadline}.
_RENEW = """
local ours = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ours = 1 end
return {ours, redis.call('HGET', KEYS[2], 'status') or false, redis.call('HGET', KEYS[2], 'deadline') or false}
"""
# Drop a lease only if it is still ours (a late process must not free another's lease).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Dispatch(Protocol):
    """Sends units to the queue (Celery in the service)."""

    def chunk(self, job_id: str, index: int, filters: list[int]) -> None: ...

    def finish(self, job_id: str) -> None: ...

    def waiting(self) -> set[str]:
        """The units (`<job>:<unit>`) whose messages wait in the broker, taken by no worker yet."""
        ...


class Events(Protocol):
    """Hears a job's moves: queued -> running, and into each end (webhooks: shared/webhooks.py).

    Called once per move, by the process that made it; it must only enqueue, never wait.
    """

    def moved(self, job_id: str, status: str, code: str | None = None) -> None: ...

    def recovered(self, job_id: str, unit: str) -> None:
        """The sweep sent again a unit whose worker died (its lease lapsed)."""


class NoEvents:
    """Events that nobody hears."""

    def moved(self, job_id: str, status: str, code: str | None = None) -> None:
        """Nothing to do."""

    def recovered(self, job_id: str, unit: str) -> None:
        """Nothing to do."""


@dataclass(frozen=True)
class Unit:
    """One running unit of a job: a chunk index or FINISH, and the token of its lease."""

    job_id: str
    name: str
    token: str
    job: Job = field(compare=False, repr=False)

    @property
    def chunk(self) -> int:
        """The chunk index (not for the finish)."""
        return int(self.name)


# Why `begin` skips a unit whose work is stored already, or whose lease another holds fresh (a late or
# repeated delivery).
DONE, HELD = "done", "held"


@dataclass(frozen=True)
class Skipped:
    """A delivered unit that `begin` did not start, and why: its job ended ("canceled", "failed", ...),
    it is "done" or "held" (a duplicate), or its job "failed" as it began (attempts used, weights)."""

    why: str


@dataclass(frozen=True)
class SweptJob:
    """What the recovery sweep reads of one live job: its record's status (None: the record is gone),
    deadline and chunks, its units' starts and plans, and its done chunks."""

    status: str | None
    deadline: float | None
    chunks: int
    units: dict[str, str]
    done: set[str]


@dataclass(frozen=True)
class Renewal:
    """What a heartbeat learned: whether the lease is still ours, and whether to go on."""

    ours: bool
    status: str | None
    past_deadline: bool

    @property
    def go_on(self) -> bool:
        """The unit should keep working."""
        return self.ours and self.status in (QUEUED, RUNNING) and not self.past_deadline


class Lifecycle:
    """The job lifecycle on Redis (records, leases, attempts) and storage (results)."""

    def __init__(
        self,
        jobs: JobStore,
        storage: Storage,
        dispatch: Dispatch,
        *,
        lease_seconds: int,
        max_attempts: int,
        events: Events | None = None,
    ) -> None:
        self.jobs = jobs
        self._events = events or NoEvents()
        # What GET /v1/jobs/{id}/events follows: each move, progress and stored filter (and the frames
        # workers add).
        self.stream = EventStream(jobs)
        self._redis = jobs.redis
        self._storage = storage
        self._dispatch = dispatch
        self._scheduler = Scheduler(jobs, dispatch)
        self.lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._begin = self._redis.register_script(_BEGIN)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    # --- the API's moves: submission, an answer from the cache, cancel, delete ---------------------

    def submit(
        self, job_id: str, spec: JobSpec, chunks: list[list[int]], *, client: str, owner: str | None,
        webhook: str | None = None, hits: dict[int, dict] | None = None, hits_weights: str | None = None,
    ) -> None:  # fmt: skip
        """Record a queued job and queue its chunks for fair dispatch; a job with no chunk (every filter
        a hit) is finished here from the cache. `hits` were looked up under `hits_weights`: the job is
        bound to those weights (a worker with others fails it, never a mix)."""
        self.jobs.create(job_id, spec, len(chunks), owner=owner)
        # The stream starts with the job; later events never make it again (a deleted job's stays gone).
        self.stream.publish(job_id, job_events.STATUS, {"status": QUEUED, "code": None}, starts=True)
        if webhook is not None:
            self.jobs.set_webhook(job_id, webhook)
        if hits and hits_weights is not None:
            self.jobs.claim_weights(job_id, hits_weights)
            cache.record_hits(self._storage, job_id, hits)
            with self._redis.pipeline() as pipe:
                pipe.hset(job_keys(job_id).progress, cache.HITS_PROGRESS, len(hits))
                self.jobs.touch(pipe, job_id)
                pipe.execute()
        if chunks:
            self._scheduler.submit(job_id, client, chunks, filter_flops(spec), spec.priority)
        elif hits_weights is not None:
            self._finish_from_cache(job_id, hits_weights, hits or {})

    def _finish_from_cache(self, job_id: str, weights: str, hits: dict[int, dict]) -> None:
        """queued -> running -> succeeded now. Should storage fail midway, the job stays running with
        no chunk, and the sweep sends its finish to a worker."""
        if self.jobs.mark_running(job_id):
            self._moved(job_id, RUNNING)
        job = self.jobs.get(job_id)
        if job is None:
            log.warning("job %s: not finished from the cache: its record is gone", job_id)
            return
        finished_at = now()
        timings: dict[str, object] = {"created_at": job.created_at, "started_at": job.started_at,
                                      "finished_at": finished_at, "chunks": []}  # fmt: skip
        try:
            write_results(self._storage, job, weights=weights, entries=[], hits=hits, timings=timings,
                          runtime={"from_cache": True})  # fmt: skip
        except Exception:
            log.exception("job %s: its results from the cache could not be written; the sweep will", job_id)
            return
        if self.jobs.mark_succeeded(job_id, finished_at):
            self._moved(job_id, SUCCEEDED)

    def cancel(self, job_id: str) -> bool:
        """queued or running -> canceled (its running chunks stop at their next check); False when the
        job had already ended."""
        canceled = self.jobs.cancel(job_id)
        if canceled:
            self._moved(job_id, CANCELED)
        return canceled

    def delete(self, job_id: str) -> None:
        """An ended job's results and record, gone (pictures a chunk still stopping writes later are the
        retention sweep's)."""
        delete_job(self.jobs, self._storage, job_id)

    # --- a unit starts -------------------------------------------------------------------------

    def begin(
        self, job_id: str, unit: str, worker: str, weights: Callable[[JobSpec], str], filters: list[int] | None = None
    ) -> Unit | Skipped:
        """Take the unit when it should run now; otherwise say why not (the task then does nothing).
        `weights(spec)`: the identity of the weights the worker renders the job with (raises
        WeightsUnavailable where it can't)."""
        deliveries.forget(self._redis, job_id, unit)  # from here on its lease, or its end, covers it
        job = self.jobs.get(job_id)
        if job is None or job.status in FINISHED:
            self._leaves_broker(job_id, unit)
            return Skipped(job.status if job else "unknown job")
        keys = job_keys(job_id)
        if unit == FINISH and self._redis.scard(keys.done) < job.chunks:
            return Skipped("chunks not done")
        token = f"{worker}|{secrets.token_hex(4)}"
        holder = self._redis.get(lease_key(job_id, unit))
        dead = holder.decode() if holder and _died_here(holder.decode(), worker) else ""
        outcome = self._begin(
            keys=[lease_key(job_id, unit), keys.units, keys.done, pending_key(job_id, unit)],
            args=[token, self.lease_seconds * 1000, STALE_SECONDS * 1000, unit, dead],
        )
        if outcome[0] != b"run":
            if outcome[0] == b"done":  # a late duplicate; a held unit keeps its slot for its holder
                self._leaves_broker(job_id, unit)
            return Skipped(outcome[0].decode())
        taken = Unit(job_id, unit, token, job)
        with self._redis.pipeline() as pipe:
            if filters is not None:  # so the sweep can send this chunk again
                pipe.hset(keys.units, f"plan:{unit}", json.dumps(filters))
            self.jobs.touch(pipe, job_id)
            pipe.execute()
        if int(outcome[1]) > self._max_attempts:
            self.fail(taken, "chunk_failed_repeatedly", f"{_describe(unit)} was started {outcome[1] - 1} times "
                      "and never finished (its worker process died each time)")  # fmt: skip
            return Skipped("failed")
        if unit != FINISH:  # a finish renders only what the cache lost, under the job's weights
            try:
                own = weights(job.spec)
            except WeightsUnavailable as error:
                self.fail(taken, "weights_unavailable", f"worker {worker}: {error}")
                return Skipped("failed")
            recorded = self.jobs.claim_weights(job_id, own)
            if recorded != own:
                message = f"workers disagree on weights: job uses {recorded}, worker {worker} has {own}"
                self.fail(taken, "weights_mismatch", message)
                return Skipped("failed")
        if self.jobs.mark_running(job_id):
            self._moved(job_id, RUNNING)
        return taken

    # --- while it runs -------------------------------------------------------------------------

    def stale_in(self, job_id: str, unit: str) -> float | None:
        """Seconds until the unit's lease counts as its holder's death (not renewed for STALE_SECONDS)
        if nobody renews it; None when there is no lease."""
        left = self._redis.pttl(lease_key(job_id, unit))
        if left < 0:
            return None
        return max(0.0, (left - (self.lease_seconds - STALE_SECONDS) * 1000) / 1000)

    def renew(self, unit: Unit) -> Renewal:
        """Extend the unit's lease (the heartbeat calls this every second) and read the job's status."""
        ours, status, deadline = self._renew(
            keys=[lease_key(unit.job_id, unit.name), job_keys(unit.job_id).record],
            args=[unit.token, self.lease_seconds * 1000],
        )
        past = bool(deadline) and time.time() > float(deadline)
        if past:
            self.fail_job(unit.job_id, "deadline_exceeded", "the job ran past its deadline")
        return Renewal(bool(ours), status.decode() if status else None, past)

    def progress(self, unit: Unit, done: int) -> None:
        """Filters done so far in the unit's chunk."""
        job_done = self.jobs.set_chunk_progress(unit.job_id, unit.chunk, done)
        self.stream.publish(unit.job_id, job_events.PROGRESS, {"done": job_done, "total": unit.job.total})

    def stored(self, job_id: str, entries: list[dict[str, Any]]) -> None:
        """Filters' pictures are stored (their manifest entries): the job's followers may show them."""
        shown = [{key: entry[key] for key in ("index", "loss", "dead")} for entry in entries]
        self.stream.publish(job_id, job_events.FILTERS, {"filters": shown})

    # --- ways out ------------------------------------------------------------------------------

    def chunk_done(self, unit: Unit, finish_here: bool = False) -> bool:
        """The chunk's record is stored: mark it done. When it completes the job, the finish is enqueued,
        or with `finish_here` left to the caller (True), which saves a trip through the broker: a
        one-chunk job then takes one task. Should the caller die before the finish begins, the sweep
        enqueues it (no lease, no pending mark)."""
        job = self.jobs.get(unit.job_id)
        self._mark_done(unit.job_id, unit.name)
        self.release(unit)
        keys = job_keys(unit.job_id)
        complete = job is not None and job.status == RUNNING and self._redis.scard(keys.done) >= job.chunks
        if complete and not finish_here:
            self._enqueue(unit.job_id, FINISH, None)
        # After the finish: it goes first, not behind the next chunk. Its seconds feed estimated starts.
        self._scheduler.release(unit.job_id, unit.name, done=True)
        return complete and finish_here

    def others_waiting(self, unit: Unit) -> bool:
        """Another client's chunks wait for a slot: a running chunk yields at its next batch boundary."""
        return self._scheduler.others_waiting(unit.job_id)

    def yield_rest(self, unit: Unit, kept: list[int], rest: list[int]) -> None:
        """The chunk stopped at a batch boundary for another client's work: it keeps the filters it
        finished (then stored and done as usual), and the rest become the job's newest chunk, first
        in its queue. Before `chunk_done`: the job then counts the new chunk."""
        index = self._scheduler.split(unit.job_id, unit.name, kept, rest)
        log.info("job %s: chunk %s yields after %d filters; the other %d are chunk %d",
                 unit.job_id, unit.name, len(kept), len(rest), index)  # fmt: skip

    def finish_done(self, unit: Unit, finished_at: str) -> bool:
        """The manifest is stored: running -> succeeded (True only for the one call that moved it)."""
        moved = self.jobs.mark_succeeded(unit.job_id, finished_at)
        self.release(unit)
        if moved:
            self._moved(unit.job_id, SUCCEEDED)
        return moved

    def give_back(self, unit: Unit, filters: list[int] | None) -> None:
        """The worker stops: enqueue the unit again now, and don't count this start as an attempt."""
        self._redis.hincrby(job_keys(unit.job_id).units, f"starts:{unit.name}", -1)
        self.release(unit)
        self._enqueue(unit.job_id, unit.name, filters)

    def stopped(self, unit: Unit, filters: list[int] | None, worker_stopping: bool) -> None:
        """The unit stopped early: given back when its worker stops; when its job ended, the job's
        slots go to others (a unit that lost its lease leaves its slot to the lease's new holder)."""
        if worker_stopping:
            self.give_back(unit, filters)
        elif self.jobs.status(unit.job_id) in (*FINISHED, None):
            self._scheduler.drop(unit.job_id)

    def fail(self, unit: Unit, code: str, message: str) -> None:
        """The unit can't succeed: its job fails with code and message."""
        self.fail_job(unit.job_id, code, message)
        self.release(unit)

    def fail_job(self, job_id: str, code: str, message: str) -> bool:
        """queued or running -> failed; False when the job had already ended."""
        failed = self.jobs.mark_failed(job_id, JobError(code, message))
        self._scheduler.drop(job_id)
        if failed:
            log.warning("job %s failed: %s: %s", job_id, code, message)
            self._moved(job_id, FAILED, code)
        return failed

    def release(self, unit: Unit) -> None:
        """Drop the unit's lease if it is still ours."""
        self._release(keys=[lease_key(unit.job_id, unit.name)], args=[unit.token])

    # --- recovery ------------------------------------------------------------------------------

    def try_sweep_lock(self, worker: str, sweep_seconds: int) -> bool:
        """True for the one worker that sweeps this period (the lock lapses, never released)."""
        return bool(self._redis.set(SWEEP_LOCK, worker, nx=True, ex=sweep_seconds))

    def sweep(self) -> None:
        """Move every live job on: deadlines, lapsed leases, lost results, a missing finish; units
        delivered to a worker that died (or dropped them) before beginning them; then the slots:
        those of ended jobs freed, lost messages sent again, free ones filled."""
        live = self.jobs.live()
        for start in range(0, len(live), SWEEP_BATCH):
            going_on = {}
            for job_id, job in self._read_live(live[start : start + SWEEP_BATCH]).items():
                try:
                    if self._sweep_job(job_id, job):
                        going_on[job_id] = job.chunks
                except Exception:  # one job's trouble must not stop the others' recovery
                    log.exception("sweep of job %s failed", job_id)
            try:
                requeued = self._scheduler.requeue_lost(going_on)
            except Exception:  # nor one batch's the next batch's
                log.exception("sweep: the chunks of %d jobs could not be checked", len(going_on))
                continue
            for job_id, lost in requeued.items():
                if lost:
                    log.info("sweep: chunks %s of job %s were nowhere: queued again", ",".join(lost), job_id)
        self._sweep_deliveries()
        self._sweep_slots()

    def fill(self) -> None:
        """Send queued chunks to the broker while it has free slots (a worker process starts)."""
        self._scheduler.fill()

    def _read_live(self, job_ids: list[str]) -> dict[str, SweptJob]:
        """What the sweep needs of these jobs, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                keys = job_keys(job_id)
                pipe.hmget(keys.record, "status", "deadline", "chunks")
                pipe.hgetall(keys.units)
                pipe.smembers(keys.done)
            replies = pipe.execute()
        read = {}
        for at, job_id in enumerate(job_ids):
            (status, deadline, chunks), units, done = replies[3 * at : 3 * at + 3]
            read[job_id] = SweptJob(
                status=status.decode() if status else None,
                deadline=float(deadline) if deadline else None,
                chunks=int(chunks or 0),
                units={k.decode(): v.decode() for k, v in units.items()},
                done={m.decode() for m in done},
            )
        return read

    def _sweep_job(self, job_id: str, job: SweptJob) -> bool:
        """Recover what the job lost; False when it ended (now or before), else its queue is checked next."""
        if job.status is None or job.status in FINISHED:
            self.jobs.forget_live(job_id)
            self._scheduler.drop(job_id)
            return False
        if job.deadline is not None and time.time() > job.deadline:
            self.fail_job(job_id, "deadline_exceeded", f"the job was not done by its deadline ({job.deadline:.0f})")
            return False
        keys, units = job_keys(job_id), job.units
        for name in [str(i) for i in range(job.chunks) if str(i) not in job.done]:
            if not self._lapsed(job_id, name, units):
                continue
            if self._storage.get(job_key(job_id, chunk_record_name(int(name)))) is not None:
                log.info("sweep: chunk %s of job %s has its record: marked done", name, job_id)
                self._mark_done(job_id, name)
            elif int(units[f"starts:{name}"]) >= self._max_attempts:
                self._fail_repeated(job_id, name, units)
                return False
            else:
                log.info("sweep: chunk %s of job %s lost its worker: enqueued again", name, job_id)
                self._enqueue(job_id, name, json.loads(units[f"plan:{name}"]))
                self._events.recovered(job_id, name)
        if job.status == RUNNING and self._redis.scard(keys.done) >= job.chunks:
            if self._lapsed(job_id, FINISH, units) and int(units.get(f"starts:{FINISH}", 0)) >= self._max_attempts:
                self._fail_repeated(job_id, FINISH, units)
            elif not self._redis.exists(lease_key(job_id, FINISH)):
                self._finish_when_complete(job_id, job.chunks)
        return True

    def _sweep_deliveries(self) -> None:
        """Send again each unit whose receiver died, or dropped it with a Redis restart, before it began."""
        for orphan in deliveries.orphaned(self._redis):
            job_id, name = orphan.job_id, orphan.unit
            deliveries.forget(self._redis, job_id, name)
            if self.jobs.status(job_id) in (*FINISHED, None) or self._redis.exists(lease_key(job_id, name)):
                continue
            if name != FINISH and self._redis.sismember(job_keys(job_id).done, name):
                continue
            log.info("sweep: %s of job %s was delivered to %s, which %s before beginning it: sent again",
                     _describe(name), job_id, orphan.receiver, orphan.why)  # fmt: skip
            self._send_again(job_id, name, known_gone=True)  # the receiver is known to be gone

    def _sweep_slots(self) -> None:
        """Free the slots of jobs that ended, send again what never started, fill what is free."""
        in_flight = self._scheduler.in_flight()
        lost = self._lost_on_the_way([member for member, sent in in_flight if time.time() - sent > LOST_SECONDS])
        for member, sent in in_flight:
            job_id, name = split_member(member)
            status = self.jobs.status(job_id)
            if status is None or status in FINISHED:
                log.info("sweep: chunk %s of job %s held a slot after its job ended: freed", name, job_id)
                self._scheduler.release(job_id, name)
            elif (member in lost or time.time() - sent > PENDING_SECONDS) and not self._started(job_id, name):
                why = "was lost on its way to a worker" if member in lost else "was sent and never started"
                log.info("sweep: chunk %s of job %s %s: sent again", name, job_id, why)
                self._send_again(job_id, name, known_gone=member in lost)
        self._scheduler.fill()

    def _send_again(self, job_id: str, name: str, known_gone: bool) -> None:
        """Enqueue a unit that never began, with its plan; a chunk keeps its slot (restamped). `known_gone`:
        its message is known to be nowhere, so a pending mark from an earlier sending does not hold it back."""
        if known_gone:
            self._redis.delete(pending_key(job_id, name))
        plan = self._redis.hget(job_keys(job_id).units, f"plan:{name}")
        self._enqueue(job_id, name, json.loads(plan) if plan else None)
        if name != FINISH:
            self._scheduler.restamp(job_id, name)

    def _lost_on_the_way(self, members: list[str]) -> set[str]:
        """Of these in-flight chunks, those no worker received and the broker no longer holds (the
        caller checks that none began)."""
        if not members:
            return set()
        receipts = self._redis.hmget(deliveries.RECEIVED, members)
        unreceived = {member for member, receipt in zip(members, receipts, strict=True) if receipt is None}
        return unreceived - self._dispatch.waiting() if unreceived else set()

    def _lapsed(self, job_id: str, name: str, units: dict[str, str]) -> bool:
        """The unit started, and nothing runs it now or is about to: no lease, no pending delivery."""
        if int(units.get(f"starts:{name}", 0)) == 0:
            return False
        return not self._redis.exists(lease_key(job_id, name), pending_key(job_id, name))

    def _fail_repeated(self, job_id: str, name: str, units: dict[str, str]) -> None:
        starts = units.get(f"starts:{name}")
        self.fail_job(job_id, "chunk_failed_repeatedly", f"{_describe(name)} was started {starts} times and never "
                      "finished (its worker died or lost its lease each time)")  # fmt: skip

    # --- helpers -------------------------------------------------------------------------------

    def _moved(self, job_id: str, status: str, code: str | None = None) -> None:
        """Tell the events; their trouble (a broker hiccup) must not undo or fail the move."""
        self.stream.publish(job_id, job_events.STATUS, {"status": status, "code": code})
        try:
            self._events.moved(job_id, status, code)
        except Exception:
            log.exception("job %s: events of the move to %s were lost", job_id, status)

    def _started(self, job_id: str, name: str) -> bool:
        """The unit has a counted start (a give-back uncounts its own)."""
        return int(self._redis.hget(job_keys(job_id).units, f"starts:{name}") or 0) > 0

    def _leaves_broker(self, job_id: str, unit: str) -> None:
        """A chunk that can't run any more gives its slot to the next one (a finish holds none)."""
        if unit != FINISH:
            self._scheduler.release(job_id, unit)

    def _mark_done(self, job_id: str, name: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.sadd(job_keys(job_id).done, name)
            self.jobs.touch(pipe, job_id)
            pipe.execute()

    def _finish_when_complete(self, job_id: str, chunks: int) -> None:
        if self._redis.scard(job_keys(job_id).done) >= chunks:
            self._enqueue(job_id, FINISH, None)

    def _enqueue(self, job_id: str, name: str, filters: list[int] | None) -> None:
        """Send the unit unless a delivery of it is already pending (SET NX: once per PENDING_SECONDS)."""
        if not self._redis.set(pending_key(job_id, name), "1", nx=True, ex=PENDING_SECONDS):
            return
        if name == FINISH:
            self._dispatch.finish(job_id)
        else:
            self._dispatch.chunk(job_id, int(name), filters or [])


def _died_here(token: str, worker: str) -> bool:
    """The lease token's process ran on this worker's host (same name before ':pid') and is gone."""
    holder, _, _ = token.partition("|")
    host, _, pid = holder.rpartition(":")
    if host != worker.rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A process that died and that its parent has not reaped yet (Linux; elsewhere: False)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _describe(unit: str) -> str:
    return "the finish step" if unit == FINISH else f"chunk {unit}"
