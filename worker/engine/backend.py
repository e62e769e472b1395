"""The backend-specific primitives the engine uses (TensorFlow today; a JAX module would sit beside it)."""

from worker.engine import tf_step as active  # noqa: F401  (re-exported: the one place that picks the backend)
