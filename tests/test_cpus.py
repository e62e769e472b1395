"""CPUs a process may use: the affinity mask, capped by a container's CFS quota (v1 and v2)."""

import os

import pytest

from shared.cpus import available_cpus, cgroup_cpu_quota

HOST_CPUS = len(os.sched_getaffinity(0))


def test_no_cgroup_files_mean_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == HOST_CPUS


@pytest.mark.parametrize(("cpu_max", "quota"), [("max 100000", None), ("150000 100000", 1.5), ("50000 100000", 0.5)])
def test_cgroup_v2_quota(tmp_path, cpu_max, quota):
    (tmp_path / "cpu.max").write_text(f"{cpu_max}\n")
    assert cgroup_cpu_quota(tmp_path) == quota


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.0


def test_a_quota_caps_the_cpus_and_a_fraction_rounds_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1  # half a CPU still needs a thread
    (tmp_path / "cpu.max").write_text(f"{(HOST_CPUS + 8) * 100000} 100000\n")
    assert available_cpus(tmp_path) == HOST_CPUS  # a quota above the cores doesn't add any


def test_an_unreadable_cgroup_file_counts_as_no_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert available_cpus(tmp_path) == HOST_CPUS
