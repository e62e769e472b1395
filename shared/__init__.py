"""Code both sides use, the API and the workers (and the CLI, the retention sweep, the benchmarks):

- what a job is: spec (the request), methods, layers, cost, manifest, job_errors, atlas (many jobs);
- where it lives: settings, jobs (the Redis record), storage (S3), cache, finish, retention;
- how it moves: lifecycle (every way a job starts and ends), scheduling (fair dispatch), deliveries,
  workers (heartbeats), celery_app, webhooks and webhook_signing;
- small helpers: pictures, thumbnails, numerics, retrying, cpus, logs, metrics_dir, version.

Nothing here imports api/, worker/ or cli/ (tests/test_layout.py checks it).
"""
