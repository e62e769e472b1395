"""One-shot jobs that prepare a deployment before the API and workers start: the per-install secrets
(`python -m provision.secrets`), the bucket and the app's S3 user (`python -m provision.init_bucket`),
and the refusal of documented default secrets where a service would be exposed. The API image
carries this package; nothing in api/ or worker/ imports it, except the API's start-up refusal."""
