"""Running the ``leakwatch`` CLI as a child process and measuring its wall time and peak memory."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

try:
    import psutil
except ImportError:  # the tree sampling is a cross-check only
    psutil = None

CLI_TIMEOUT_S = 900
# `leakwatch scan` exits 1 (ExitCode.FINDINGS) when it finished and found something at or above
# --fail-on, which on a corpus with planted PII is the expected outcome, not a failure.
SCAN_DONE_EXIT_CODES = (0, 1)


def leakwatch_exe() -> str | None:
    """``LEAKWATCH_BENCH_CLI`` if set (to time another build), else the console script beside the
    interpreter running the bench (the venv's), else PATH's."""
    if os.environ.get("LEAKWATCH_BENCH_CLI"):
        return os.environ["LEAKWATCH_BENCH_CLI"]
    beside = Path(sys.executable).with_name("leakwatch")
    return str(beside) if beside.exists() else shutil.which("leakwatch")


@functools.cache
def cli_unavailable_reason() -> str | None:
    """Why ``leakwatch scan`` cannot run here, or None when ``scan --help`` works."""
    exe = leakwatch_exe()
    if exe is None:
        return "no leakwatch console script installed"
    try:
        p = subprocess.run([exe, "scan", "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`leakwatch scan --help` failed: {e}"
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        return f"`leakwatch scan --help` exits {p.returncode}: {tail[0][:140]}"
    return None


def scan_command(path: Path | str, db: Path | str, workers: int) -> list[str]:
    return [leakwatch_exe(), "scan", str(path), "--db", str(db), "--workers", str(workers)]


@dataclass
class Measured:
    wall_s: float
    returncode: int
    maxrss_mib: float  # the command's own peak (and that of any child it waited for), from wait4
    tree_peak_mib: float | None  # highest sampled sum over the command and its live descendants
    stderr_tail: str


# Runs in a small interpreter between us and the measured command. Linux folds the *old* address
# space's high-water RSS into ru_maxrss at exec (fs/exec.c, exec_mmap), and a child spawned by a
# process holding the 200 MiB corpus starts from that process' address space: measured from the
# bench process directly, even /bin/true "peaks" at the bench's size. Spawned from this ~10 MiB
# process instead, the command's ru_maxrss is its own. It also times the command itself, so the
# trampoline's own start-up is not in the wall time.
_TRAMPOLINE = r"""
import json, os, sys, time
cmd = json.loads(sys.argv[1])
devnull = os.open(os.devnull, os.O_WRONLY)
t0 = time.perf_counter()
pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1)])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status), "maxrss_kib": ru.ru_maxrss, "wall_s": wall}))
"""


def run_measured(cmd: list[str], timeout: float = CLI_TIMEOUT_S) -> Measured:
    """Run ``cmd`` through the trampoline above and return its wall time and peak memory.

    ``ru_maxrss`` (via ``wait4`` in the trampoline) is exact but only counts the command and the
    children it waited for, as a maximum, not a sum. Worker processes alive at the same time add
    up: a psutil sampler (every 50 ms) sums the command's live process tree as a cross-check.
    """

    exe = shutil.which(cmd[0]) or cmd[0]  # posix_spawn does not search PATH
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _TRAMPOLINE, json.dumps([exe, *cmd[1:]])],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)  # own process group: a timeout kills it all
        peak = [0]
        done = threading.Event()

        def sample():
            try:
                root = psutil.Process(proc.pid)
                while not done.wait(0.05):
                    total = 0
                    for c in root.children(recursive=True):  # the trampoline itself is not counted
                        try:
                            total += c.memory_info().rss
                        except psutil.Error:
                            pass
                    peak[0] = max(peak[0], total)
            except psutil.Error:
                pass  # the process ended between samples

        sampler = None
        if psutil is not None:
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            raise
        finally:
            done.set()
            if sampler is not None:
                sampler.join()
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"measuring trampoline failed (exit {proc.returncode}): {tail[-300:]}")
    r = json.loads(out)
    return Measured(r["wall_s"], r["rc"], r["maxrss_kib"] / 1024,
                    peak[0] / 1048576 if psutil is not None and peak[0] else None, tail)
