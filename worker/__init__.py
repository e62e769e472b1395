"""The worker side: the TensorFlow engine, model loading, rendering, the CLI and the Celery tasks."""
