"""What a failed job tells its owner: its code, and a message a person can act on.

A failure's own message may carry an exception's text, a storage server's answer or a worker's host
name and pid (worker/tasks.py, shared/lifecycle.py): useful to an operator, who finds it in the
workers' logs and, with an admin token, in the job's `error.detail`; nothing an owner needs to see.
"""

from shared.jobs import JobError

# Codes whose message the lifecycle words itself, from chunk names and limits only: shown as written.
OWN_WORDS = frozenset({"deadline_exceeded", "chunk_failed_repeatedly", "chunk_timeout", "chunk_missing"})
MESSAGES = {
    "render_failed": "a chunk of this job failed while it rendered; submit the job again, and tell the "
    "operator if it fails again",
    "storage_unavailable": "the service could not store or read this job's pictures; submit the job again in "
    "a few minutes",
    "picture_missing": "a picture this job needed was deleted or expired before it finished; submit the job again",
    "weights_mismatch": "workers with different weights took parts of this job (its pictures would not "
    "match); submit it again",
    "weights_unavailable": "the workers can't render this model now: its weights are missing on them, or "
    "too large for their memory; choose another model, or ask the operator",
}
OTHER = "the job failed on the service's side; submit it again, and tell the operator if it fails again"


def public_error(error: JobError) -> JobError:
    """The error as its owner sees it: the same code, a message without internals."""
    if error.code in OWN_WORDS:
        return error
    return JobError(error.code, MESSAGES.get(error.code, OTHER))
