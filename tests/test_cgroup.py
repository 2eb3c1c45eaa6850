"""Container memory limits read from fake cgroup trees (v2 and v1), bad files included."""

from __future__ import annotations

from pathlib import Path

import pytest

from sizer.core.hardware import cgroup

from sizer.core.hardware import profile as hardware
from sizer.core.hardware.cgroup import memory_limit
from sizer.core.hardware.profile import GIB

V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 writes when no limit is set


def tree(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake cgroup mount under tmp_path/cg and a fake /proc/self/cgroup holding `own`."""
    root = tmp_path / "cg"
    root.mkdir()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(own)
    return root, proc


def test_v2_limit_and_usage_without_inactive_cache(tmp_path):
    root, proc = tree(tmp_path, "0::/\n", {
        "memory.max": str(8 * GIB),
        "memory.current": str(GIB),
        "memory.stat": f"anon 123\ninactive_file {GIB // 2}\nactive_file 7\n",
    })
    limit = memory_limit(root, proc)
    assert limit.limit_bytes == 8 * GIB and limit.version == "v2"
    # usage = 1 GiB charged - 0.5 GiB inactive page cache = 0.5 GiB; available = 8 - 0.5 = 7.5 GiB
    assert limit.usage_bytes == GIB // 2
    assert limit.available_bytes == 7 * GIB + GIB // 2


def test_v2_max_means_no_limit(tmp_path):
    root, proc = tree(tmp_path, "0::/\n", {"memory.max": "max\n", "memory.current": "100"})
    assert memory_limit(root, proc) is None


def test_v2_limit_on_an_ancestor_applies(tmp_path):
    root, proc = tree(tmp_path, "0::/kubepods/pod1/ctr\n", {
        "kubepods/pod1/ctr/memory.max": "max",
        "kubepods/pod1/memory.max": str(4 * GIB),
        "kubepods/memory.max": str(16 * GIB),
    })
    limit = memory_limit(root, proc)
    assert limit.limit_bytes == 4 * GIB
    assert limit.path == root / "kubepods/pod1/memory.max"


def test_v1_limit(tmp_path):
    root, proc = tree(tmp_path, "5:cpuacct,cpu:/docker/abc\n4:memory:/docker/abc\n0::/\n", {
        "memory/docker/abc/memory.limit_in_bytes": str(2 * GIB),
        "memory/docker/abc/memory.usage_in_bytes": str(GIB),
        "memory/docker/abc/memory.stat": f"inactive_file 1\ntotal_inactive_file {GIB // 4}\n",
        "memory/memory.limit_in_bytes": V1_UNLIMITED,
    })
    limit = memory_limit(root, proc)
    assert (limit.limit_bytes, limit.version) == (2 * GIB, "v1")
    assert limit.usage_bytes == GIB - GIB // 4  # total_inactive_file, not the cgroup's own inactive_file


def test_v1_huge_value_means_no_limit(tmp_path):
    root, proc = tree(tmp_path, "4:memory:/\n", {"memory/memory.limit_in_bytes": V1_UNLIMITED})
    assert memory_limit(root, proc) is None


def test_mount_of_the_containers_own_cgroup(tmp_path):
    # /proc/self/cgroup names the host's path, but the container sees its own cgroup at the root
    root, proc = tree(tmp_path, "0::/system.slice/docker-1.scope\n", {"memory.max": str(3 * GIB)})
    assert memory_limit(root, proc).limit_bytes == 3 * GIB


def test_the_tighter_of_v1_and_v2_wins(tmp_path):
    root, proc = tree(tmp_path, "4:memory:/\n0::/\n", {
        "unified/memory.max": str(6 * GIB),
        "memory/memory.limit_in_bytes": str(5 * GIB),
    })
    assert memory_limit(root, proc).limit_bytes == 5 * GIB


@pytest.mark.parametrize("limit_text", ["", "garbage\n", "-1", "0", "12.5", "\x00\xff"])
def test_malformed_limits_count_as_none(tmp_path, limit_text):
    root, proc = tree(tmp_path, "0::/\n", {"memory.max": limit_text})
    assert memory_limit(root, proc) is None


def test_unreadable_files_never_raise(tmp_path):
    root, proc = tree(tmp_path, "0::/../../etc\n", {"memory.max": str(GIB)})
    (root / "memory.current").mkdir()  # reading a directory raises IsADirectoryError
    (root / "memory.stat").mkdir()
    limit = memory_limit(root, proc)  # ".." in the path: only the mount itself is read
    assert limit.limit_bytes == GIB and limit.usage_bytes is None
    assert limit.available_bytes == GIB  # usage unknown: the whole limit


def test_missing_proc_file_and_missing_mount(tmp_path):
    assert memory_limit(tmp_path / "nowhere", tmp_path / "no_proc") is None
    root, _ = tree(tmp_path, "", {"memory.max": str(2 * GIB)})
    assert memory_limit(root, tmp_path / "no_proc").limit_bytes == 2 * GIB  # the root cgroup is read


def test_garbage_proc_self_cgroup(tmp_path):
    root, proc = tree(tmp_path, "not a cgroup line\n::\n", {"memory.max": str(GIB)})
    assert memory_limit(root, proc) is None  # no cgroup named: nothing to read


def test_ram_is_the_limit_only_when_lower_than_the_hosts(tmp_path):
    root, proc = tree(tmp_path, "0::/\n", {"memory.max": str(8 * GIB), "memory.current": str(2 * GIB)})
    limit = memory_limit(root, proc)
    total, available, source = hardware.ram_under_limit(64 * GIB, 60 * GIB, limit)
    # 8 GiB limit - 2 GiB used = 6 GiB available, below the host's 60 GiB
    assert (total, available) == (8 * GIB, 6 * GIB)
    assert source.startswith("container limit: cgroup v2 memory.max") and "64.0 GiB" in source
    total, available, source = hardware.ram_under_limit(4 * GIB, 3 * GIB, limit)
    assert (total, available) == (4 * GIB, 3 * GIB) and source.startswith("the host's RAM")



def test_a_stat_error_on_the_path_counts_as_no_cgroup_there(tmp_path, monkeypatch):
    root, proc = tree(tmp_path, "0::/a\n", {"memory.max": str(GIB), "a/memory.max": str(2 * GIB)})
    real = Path.is_dir

    def denied(path):
        if path.name == "a":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "is_dir", denied)
    assert memory_limit(root, proc).limit_bytes == GIB  # only the mount itself could be read


def test_the_hardware_screen_says_which_ram_applies():
    import dataclasses

    from sizer.core.hardware.profile import simulated
    from sizer.tui.screens.hardware import profile_lines

    profile = simulated("8 vCPU 32GB")
    limited = dataclasses.replace(profile, cpu=dataclasses.replace(
        profile.cpu, ram_source="container limit: cgroup v2 memory.max (/sys/fs/cgroup/memory.max), below the host's 64.0 GiB"))
    ram = next(line for line in profile_lines(limited) if line.startswith("RAM"))
    assert ram.endswith("container limit: cgroup v2 memory.max (/sys/fs/cgroup/memory.max), below the host's 64.0 GiB")
    assert next(line for line in profile_lines(profile) if line.startswith("RAM")).endswith("available")
