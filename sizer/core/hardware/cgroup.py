"""The memory limit a container puts on this process: its cgroup's (v2 or v1), or none.

Inside a container psutil reports the host's RAM, while the kernel kills the process at the
cgroup's limit. The limit is the tightest one over the process's cgroup and its ancestors:
- cgroup v2: `memory.max` ("max" = no limit), usage `memory.current`;
- cgroup v1: `memory.limit_in_bytes` (a value near 2**63 = no limit), usage `memory.usage_in_bytes`.
Usage counts the page cache, which the kernel reclaims before killing; its inactive part
(`inactive_file`, v1 `total_inactive_file` in `memory.stat`) is left out, as `docker stats` does.

Reading never raises: a missing, unreadable or malformed file counts as "no limit there".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# v1 writes "no limit" as the largest page-aligned signed 64-bit value (9223372036854771712);
# anything at or above 2**62 bytes (4 EiB) cannot be a real limit.
V1_NO_LIMIT = 2**62


@dataclass(frozen=True)
class MemoryLimit:
    """A cgroup memory limit in bytes, what is charged against it, and the file it came from."""

    limit_bytes: int
    usage_bytes: int | None  # charged to the cgroup, inactive page cache excluded; None = unreadable
    version: str  # "v2" or "v1"
    path: Path  # the limit file

    @property
    def available_bytes(self) -> int:
        """Bytes still free under the limit (the whole limit when the usage is unreadable)."""
        return max(self.limit_bytes - (self.usage_bytes or 0), 0)

    def describe(self) -> str:
        return f"cgroup {self.version} {self.path.name} ({self.path})"


@dataclass(frozen=True)
class _Files:
    version: str
    mount: str  # below the cgroup root
    limit: str
    usage: str
    inactive: str  # the memory.stat key of the inactive page cache


_V2 = (_Files("v2", "", "memory.max", "memory.current", "inactive_file"),
       _Files("v2", "unified", "memory.max", "memory.current", "inactive_file"))  # hybrid hosts
_V1 = (_Files("v1", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),)


def memory_limit(root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> MemoryLimit | None:
    """The tightest cgroup memory limit on this process, or None when there is none.

    `root` is where the cgroup file systems are mounted and `self_cgroup` the process's
    /proc/self/cgroup (parameters so that tests can use fake trees).
    """
    paths = _own_cgroups(self_cgroup)
    found: list[MemoryLimit] = []
    for files in _V2:
        if "v2" in paths:
            found += _limits(root / files.mount if files.mount else root, paths["v2"], files)
    for files in _V1:
        if "v1" in paths:
            found += _limits(root / files.mount, paths["v1"], files)
    return min(found, key=lambda m: m.limit_bytes, default=None)


def _own_cgroups(self_cgroup: Path) -> dict[str, str]:
    """{"v2": path, "v1": path of the memory controller} from /proc/self/cgroup lines
    "0::/path" (v2) and "N:memory:/path" or "N:cpu,memory:/path" (v1). An unreadable file means
    the root cgroup of each (a container with its own cgroup namespace sees "/" anyway)."""
    text = _read(self_cgroup)
    if text is None:
        return {"v2": "/", "v1": "/"}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1"] = path
    return paths


def _limits(base: Path, own: str, files: _Files) -> list[MemoryLimit]:
    """Limits set on the process's cgroup under `base` and on each of its ancestors."""
    out = []
    for directory in _lineage(base, own):
        limit = _parse_limit(_read(directory / files.limit))
        if limit is not None:
            usage = _usage(directory, files)
            out.append(MemoryLimit(limit, usage, files.version, directory / files.limit))
    return out


def _lineage(base: Path, own: str) -> list[Path]:
    """base/own, its parents up to base; just base when base/own is not there (the mount shows
    the container's own cgroup while /proc/self/cgroup names the host's path)."""
    parts = [p for p in own.strip().split("/") if p]
    if any(p in (".", "..") for p in parts):
        parts = []
    dirs = [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    existing = [d for d in dirs if _is_dir(d)]
    return existing if _is_dir(dirs[0]) else [base]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. EACCES on a parent: Path.is_dir only swallows "not found" errors
        return False


def _parse_limit(text: str | None) -> int | None:
    if text is None:
        return None
    value = _parse_int(text)
    if value is None or value <= 0 or value >= V1_NO_LIMIT:
        return None  # "max", garbage, or v1's "no limit"
    return value


def _usage(directory: Path, files: _Files) -> int | None:
    usage = _parse_int(_read(directory / files.usage))
    if usage is None:
        return None
    inactive = 0
    for line in (_read(directory / "memory.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == files.inactive:
            inactive = _parse_int(value) or 0
    return max(usage - inactive, 0)


def _parse_int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None
