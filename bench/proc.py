"""Run one command as a child process and measure it: wall time, exit status, peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Result:
    wall: float  # seconds, process start to exit
    rss_mib: float  # the child's peak resident set size (its own ru_maxrss)
    returncode: int
    stdout: str
    stderr: str
    cpu: float = 0.0  # the child's user + system CPU seconds

    def json(self) -> dict:
        """The last line of stdout, parsed: how bench scripts report."""
        if self.returncode != 0:
            raise RuntimeError(f"exit {self.returncode}: {self.stderr.strip()[-2000:]}")
        return json.loads(self.stdout.strip().splitlines()[-1])


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
        timeout: float = 900) -> Result:
    """Output goes through temporary files and the child is reaped with os.wait4, which
    returns that child's own rusage (RUSAGE_CHILDREN would be the maximum over all children)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, text=True,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Result(wall, usage.ru_maxrss / 1024, p.returncode, out.read(), err.read(),
                      usage.ru_utime + usage.ru_stime)
