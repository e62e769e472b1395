"""Code used by both the API and the worker: job spec, layer table, settings, manifest."""
