"""The local stack of `make up` lasts: its S3 server holds what the disk holds, its data survives
`make down` / `make up`, its logs rotate, and `make clean-data` asks before deleting."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from devstack.local import S3_VOLUME_FLAGS, LocalStack, dump_stacks, free_port, wait_until
from shared.storage import Storage
from tests.compose_helpers import render_compose
from tests.service_helpers import SMALL_JOB, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.unit
def test_a_port_is_handed_out_once_even_while_nothing_listens_on_it(monkeypatch):
    from devstack import local

    # Three ports at the top of this test process's block, none listened on: each comes out once.
    monkeypatch.setattr(local, "PORT_RANGE", local.PORT_RANGE[-3:] if local.PORT_RANGE else range(59990, 59993))
    monkeypatch.setattr(local, "_HANDED_OUT", set())
    assert sorted(free_port() for _ in range(3)) == list(local.PORT_RANGE)
    with pytest.raises(OSError, match="no free port"):
        free_port()


@pytest.mark.stack  # starts its own servers
def test_a_worker_that_hangs_is_ended_with_its_threads_stacks_shown(tmp_path):
    stack = LocalStack(tmp_path, extra_env={"FILTERVIZ_TEST_HANG_AT_START": "1"})
    try:
        stack.start_redis()
        worker = stack.spawn_worker("stuck", app="tests.fault_worker")
        log = tmp_path / "stuck.log"
        wait_until(lambda: "fault hook: start hangs" in log.read_text(errors="replace"), "the hang", 120, worker)
        stacks = dump_stacks(worker, log)  # what start_worker says when a worker isn't ready in time
        assert worker.wait(timeout=30) != 0
    finally:
        stack.stop_all(at_once=True)
    # faulthandler's dump of the pool process, down to the line it waits on, and of its parent.
    assert stacks.count("most recent call first") >= 2 and "in start_process" in stacks


@pytest.mark.stack  # starts its own servers
def test_the_local_s3_takes_a_gigabyte_of_png_sized_objects(tmp_path):
    # The old settings (8 volume slots of 64 MB) refused every write after about 70 MB.
    stack = LocalStack(tmp_path)
    try:
        stack.start_s3()
        storage = Storage(stack.settings)
        body = os.urandom(256 * 1024)  # a 256 px picture's PNG is about this size
        count = 4096  # 1 GiB
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: storage.put(f"load/{i}.png", body, "image/png"), range(count)))
        assert len(storage.list_keys("load/")) == count
        assert storage.get(f"load/{count - 1}.png") == body
    finally:
        stack.stop_all(at_once=True)


def test_compose_and_make_up_give_seaweedfs_the_same_volume_settings():
    command = render_compose()["services"]["s3"]["command"]
    assert set(S3_VOLUME_FLAGS) <= set(command)


def test_logs_rotate_at_a_size(tmp_path):
    log = tmp_path / "service.log"
    script = "import sys\nfor i in range(2000): print('line', i, 'x' * 40)\nsys.exit(3)"
    command = [sys.executable, "-m", "devstack.logpipe", "--max-bytes", "10000", "--backups", "2", str(log),
               "--", sys.executable, "-c", script]  # fmt: skip
    assert subprocess.run(command, cwd=ROOT).returncode == 3  # the service's own status
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["service.log", "service.log.1", "service.log.2"]
    assert all(f.stat().st_size <= 10000 for f in files)
    assert log.read_text().splitlines()[-1] == "line 1999 " + "x" * 40


# A service that says which of its processes got SIGTERM: itself, or the child it started.
SAYS_WHO_GOT_SIGTERM = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time\\n"
    "signal.signal(signal.SIGTERM, lambda *_: print('child got SIGTERM', flush=True))\\n"
    "print('child ready', flush=True)\\ntime.sleep(60)"])
def stop(*_):
    print("service got SIGTERM", flush=True)
    time.sleep(0.5)  # the child's word, if it got one, is written first
    child.kill()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""


def test_a_stop_signal_to_the_log_pipe_reaches_the_service_alone(tmp_path):
    # `make down` signals the pipe, which leads the group: the service gets it, and stops its own
    # children its way (a Celery worker's pool processes give their chunks back on their parent's word).
    log = tmp_path / "service.log"
    pipe = subprocess.Popen([sys.executable, "-m", "devstack.logpipe", str(log), "--", sys.executable, "-c",
                             SAYS_WHO_GOT_SIGTERM], cwd=ROOT, start_new_session=True)  # fmt: skip
    wait_until(lambda: log.exists() and "child ready" in log.read_text(), "the service's child", 30, pipe)
    pipe.terminate()
    assert pipe.wait(timeout=30) == 0  # the service's own status
    said = log.read_text()
    assert "service got SIGTERM" in said and "child got SIGTERM" not in said, said


def _devstack(action: str, env: dict[str, str], *extra: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack", action, *extra], cwd=ROOT, env=env, input=stdin,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def local_env(tmp_path):
    """The environment of `make up` in a folder of its own, on free ports, with random weights."""
    env = {
        **os.environ,
        "FILTERVIZ_LOCAL_DIR": str(tmp_path / "local"),
        "FILTERVIZ_API_PORT": str(free_port()),
        "FILTERVIZ_LOCAL_REDIS_PORT": str(free_port()),
        "FILTERVIZ_LOCAL_S3_PORT": str(free_port()),
        "FILTERVIZ_WEIGHTS": "random:1",
    }
    yield env
    _devstack("down", env)


@pytest.mark.stack  # starts its own servers
def test_jobs_and_pictures_survive_make_down_and_up_until_clean_data(local_env):
    api = f"http://127.0.0.1:{local_env['FILTERVIZ_API_PORT']}"
    local = Path(local_env["FILTERVIZ_LOCAL_DIR"])
    started = _devstack("up", local_env)
    assert started.returncode == 0, started.stderr
    assert f"data: {(local / 'redis').resolve()}" in started.stdout
    job = requests.post(f"{api}/v1/jobs", json=SMALL_JOB, timeout=10).json()
    assert wait_for(api, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    grid = requests.get(f"{api}/v1/jobs/{job['id']}/grid.png", timeout=10).content

    assert _devstack("down", local_env).returncode == 0
    restarted = _devstack("up", local_env)
    assert restarted.returncode == 0, restarted.stderr
    again = requests.get(f"{api}/v1/jobs/{job['id']}", timeout=10).json()
    assert again["status"] == "succeeded" and again["created_at"] == job["created_at"]  # the Redis record
    assert requests.get(f"{api}/v1/jobs/{job['id']}/grid.png", timeout=10).content == grid
    assert (local / "api.log").stat().st_size > 0

    assert _devstack("clean-data", local_env).returncode == 1  # refuses while the stack is up
    assert _devstack("down", local_env).returncode == 0
    kept = _devstack("clean-data", local_env, stdin="n\n")
    assert kept.returncode == 1 and (local / "s3").exists() and (local / "redis").exists()
    removed = _devstack("clean-data", local_env, "--force")
    assert removed.returncode == 0, removed.stderr
    assert not (local / "s3").exists() and not (local / "redis").exists()
