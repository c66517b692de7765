"""Versions and machine facts stored with every result (numbers without them mean little)."""

import functools
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

__all__ = ["environment"]

#: distributions whose version goes into every result
DISTRIBUTIONS = ["brian2", "brian2-numba", "numba", "llvmlite", "numpy", "Cython",
                 "scipy"]


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _first_line(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0] if out.returncode == 0 and lines else None


def _cpu_model():
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.lower().startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        return _first_line(["sysctl", "-n", "machdep.cpu.brand_string"])
    return platform.processor() or platform.machine()


def _memory_gib():
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


@functools.cache
def environment():
    """``{'versions': {...}, 'machine': {...}}`` of this interpreter and machine."""
    versions = {"python": platform.python_version()}
    versions.update({name.lower(): _version(name) for name in DISTRIBUTIONS})
    cxx = os.environ.get("CXX", "g++")
    compiler = _first_line([cxx, "--version"]) if shutil.which(cxx) else None
    machine = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "cxx": compiler,
    }
    return {"versions": versions, "machine": machine}
