"""Running a command with no network: a fresh network namespace with only loopback up
(``unshare -n``; Jupyter kernels talk to papermill over 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import subprocess

_SH = 'ip link set lo up && exec "$@"'


def available() -> str | None:
    """None when commands can be run offline here, else the reason they cannot."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip not installed (util-linux, iproute2)"
    if os.geteuid() != 0:
        return "unshare -n needs root here"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", _SH, "sh", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"unshare -n failed: {probe.stderr.decode().strip()}"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """``cmd`` inside a network namespace that has loopback and nothing else."""
    return subprocess.run(["unshare", "-n", "sh", "-c", _SH, "sh", *cmd], capture_output=True, text=True, **kw)
