"""A Python client for the filterviz API (requests only: no TensorFlow, Flask or Celery).

from client import Client

with Client("http://localhost:8000") as api:
    job = api.submit({"layer": "block4_conv1", "filters": {"start": 0, "stop": 16}})
    job = api.wait(job.id, on_progress=lambda job: print(job.done, "/", job.total))
    if job.status == "succeeded":
        api.download(job.id, Path("out"))
"""

from client.api import ApiError, Client, Job, WaitTimeout

__all__ = ["ApiError", "Client", "Job", "WaitTimeout"]
