"""The machine a run or a reproduction ran on: CPU model, the instruction set torch dispatches to, thread counts
and the numeric packages' versions. Float results can differ between CPUs and kernels, so every run's provenance
and every reproduction's ``results/machine_<scale>.json`` record it (``python -m hdm.reproduce --check`` names both
machines)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

NUMERIC_PACKAGES = ("torch", "numpy", "numba", "scipy", "pot")


def package_versions(packages) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is missing."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), or "unknown"."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """json-able description of this machine and of the numeric stack as this process uses it."""
    import numba
    import torch

    versions = package_versions(NUMERIC_PACKAGES)
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ISA torch's kernels dispatch to
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
    }


def describe(info: dict | None) -> str:
    """One line: CPU, ISA, threads and torch/numpy versions of a ``machine_info`` dict ("not recorded" for None)."""
    if not info:
        return "not recorded"
    packages = info.get("packages", {})
    return (f"{info.get('cpu', '?')} ({info.get('logical_cpus', '?')} logical CPUs), torch ISA "
            f"{info.get('torch_cpu_capability', '?')}, {info.get('torch_threads', '?')} torch / "
            f"{info.get('numba_threads', '?')} numba threads, torch {packages.get('torch')}, numpy "
            f"{packages.get('numpy')}, numba {packages.get('numba')}, Python {info.get('python', '?')}")
