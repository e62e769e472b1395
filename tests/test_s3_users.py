"""The app's S3 user (provision/s3_users.py): its policy names only the actions the app uses, and
those are enough for everything shared/storage.py does, on a real SeaweedFS with its IAM API (as
compose runs it: the root's key in weed's environment, `-s3.iam.readOnly=false`)."""

import os
import subprocess
from collections.abc import Iterator

import pytest
import requests
from botocore.exceptions import ClientError

from devstack.local import S3_VOLUME_FLAGS, _tool, free_port, stop_process_group
from provision.init_bucket import init_bucket
from provision.s3_users import bucket_policy
from shared.settings import Settings
from shared.storage import Storage

ROOT_KEY, ROOT_SECRET = "filterviz-root", "root-secret-for-this-test-only"
APP_SECRET = "app-secret-for-this-test-only"


def test_the_policy_allows_listing_and_object_reads_writes_and_deletes_on_the_bucket_only():
    statements = bucket_policy("results")["Statement"]
    granted = {(action, resource) for s in statements for action in s["Action"] for resource in s["Resource"]}
    assert granted == {
        ("s3:ListBucket", "arn:aws:s3:::results"),
        ("s3:GetObject", "arn:aws:s3:::results/*"),
        ("s3:PutObject", "arn:aws:s3:::results/*"),
        ("s3:DeleteObject", "arn:aws:s3:::results/*"),
    }


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory) -> Iterator[str]:
    """A SeaweedFS server whose S3 port serves the IAM API, with a root identity; its S3 endpoint."""
    data = tmp_path_factory.mktemp("seaweedfs")
    s3, master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = (free_port() for _ in range(8))
    command = [
        _tool("weed"), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *S3_VOLUME_FLAGS,
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}", "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.iam.readOnly=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", "-master.telemetry=false",
    ]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ROOT_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET}
    log = (data / "weed.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{s3}"
    finally:
        stop_process_group(process, grace=0)


def test_the_app_key_does_all_the_app_does_and_no_more(seaweedfs):
    settings = Settings(s3_endpoint_url=seaweedfs, s3_access_key_id="filtervizapp", s3_secret_access_key=APP_SECRET,
                        s3_root_access_key_id=ROOT_KEY, s3_root_secret_access_key=ROOT_SECRET)  # fmt: skip
    init_bucket(settings, wait_seconds=90)  # the bucket, and the app's user with bucket_policy
    app = Storage(settings)
    app.check()
    app.put("jobs/a/grid.png", b"png", "image/png")
    assert app.get("jobs/a/grid.png") == b"png" and app.open("jobs/a/grid.png").body.read() == b"png"
    assert app.copy("jobs/a/grid.png", "cache/grid-1.png")
    assert requests.get(app.presign("cache/grid-1.png"), timeout=10).content == b"png"
    assert sorted(app.list_keys("")) == ["cache/grid-1.png", "jobs/a/grid.png"]
    assert app.delete_prefix("jobs/") == 1 and app.get("jobs/a/grid.png") is None
    app.probe_write()
    # Another bucket (the root's) is out of reach, and no bucket can be made.
    root = Storage(Settings(s3_endpoint_url=seaweedfs, s3_access_key_id=ROOT_KEY, s3_secret_access_key=ROOT_SECRET,
                            s3_bucket="someone-else"))  # fmt: skip
    root.ensure_bucket()
    for refused in (lambda: app._client.put_object(Bucket="someone-else", Key="k", Body=b"x"),
                    lambda: app._client.create_bucket(Bucket="made-by-the-app")):  # fmt: skip
        with pytest.raises(ClientError, match="AccessDenied"):
            refused()
