"""The grader's handle on one sandboxed worker: start it, send it a piece, read back bytes.

``bwrap`` (bubblewrap) builds the sandbox: new PID, network (loopback only), IPC, UTS and mount
namespaces; a root of its own with read-only binds of the system, the Python environment,
``gencore/`` and the three files the worker needs (``worker.py``, ``wire.py``, the unit's probes); a private
size-limited tmpfs for ``/tmp``; nothing else of the repository (no ``solutions/``, no grader
checks), no submissions, no gradebook, no output folder. The worker there forks one child per
piece (see ``worker.py``); when the grader runs as root the child also becomes an unprivileged
user of its own, so that the process limit holds and it cannot touch the template.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder import ROOT
from autograder.wire import frame

WORKER = Path(__file__).with_name("worker.py")


def gencore_folder() -> Path:
    """The ``gencore`` this environment imports (an editable install points into a checkout):
    the sandbox mounts it at the same path, so that the worker imports the same package."""
    spec = importlib.util.find_spec("gencore")
    return Path(spec.origin).resolve().parent if spec and spec.origin else ROOT / "gencore"

WIRE = Path(__file__).with_name("wire.py")


@dataclass
class Limits:
    """Per-submission limits; every field is a command-line option of ``grade``."""

    piece_seconds: float = 60.0  # wall clock for one graded piece (all its checks)
    notebook_seconds: float = 240.0  # wall clock for the whole submission
    memory_mb: int = 2048  # address space a piece may add to the warm template's
    processes: int = 64  # processes and threads of the sandboxed user
    file_mb: int = 64  # largest file the student's code may write in its scratch folder
    scratch_mb: int = 256  # size of the sandbox's /tmp
    result_mb: int = 32  # most bytes a piece may send back


class SandboxUnavailable(RuntimeError):
    pass


def sandbox_problem() -> str | None:
    """Why bubblewrap cannot sandbox here, or None when it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    probe = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.strip()}"
    return None


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    return args


def bwrap_command(probes: Path | None, library: str | None, limits: Limits, environment: dict[str, str]) -> list[str]:
    python_homes = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve()), str(Path(sys.executable).resolve().parents[1])}
    # /tmp first: binds below it (a virtual environment in /tmp) must land on top of it
    args = ["bwrap", "--size", str(limits.scratch_mb * 2**20), "--tmpfs", "/tmp", *_system_binds()]
    parents = sorted({str(p) for home in [*python_homes, sys.prefix, str(gencore_folder())] for p in Path(home).parents} - {"/", "/tmp", "/usr"})
    for parent in parents:  # bwrap would make the parents of a bind point private (0700)
        args += ["--perms", "0755", "--dir", parent]
    for home in sorted(python_homes):
        if not home.startswith("/usr"):
            args += ["--ro-bind", home, home]
    if Path(sys.prefix) != Path(sys.prefix).resolve():
        args += ["--ro-bind", sys.prefix, sys.prefix]
    args += [
        "--ro-bind", str(gencore_folder()), str(gencore_folder()),  # editable install: same path
        "--ro-bind", str(WORKER), "/grader/worker.py",
        "--ro-bind", str(WIRE), "/grader/wire.py",
        *(["--ro-bind", str(probes), "/grader/probes.py"] if probes else []),
        "--proc", "/proc", "--dev", "/dev",
        "--die-with-parent", "--new-session", "--chdir", "/tmp", "--clearenv",
    ]
    if os.geteuid() == 0:
        # no user namespace: the child must be able to become another real user (below)
        args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        args += ["--unshare-all"]
    for key, value in environment.items():
        args += ["--setenv", key, value]
    if os.geteuid() == 0:
        # kept by the template only; the child's setuid to an unprivileged user drops them all
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER"):
            args += ["--cap-add", cap]
    return [*args, sys.executable, "-I", "-B", "/grader/worker.py", *(["/grader/probes.py", library] if probes else [])]


def _write_frame(stream, payload: bytes) -> None:
    stream.write(frame(payload))
    stream.flush()


class Slot:
    """One warm worker (in its sandbox, or a plain subprocess with ``sandbox=False``)."""

    def __init__(self, index: int, probes: Path | None, library: str | None, limits: Limits, sandbox: bool, scale: str):
        """``probes`` and ``library`` of a declared unit; None for plain notebooks."""
        self.index, self.probes, self.library, self.limits, self.sandbox = index, probes, library, limits, sandbox
        self.environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "MPLBACKEND": "Agg", "GENCORE_SCALE": scale,
            "GENCORE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
            "AUTOGRADER_SANDBOXED": "1" if sandbox else "0",
        }
        self.process: subprocess.Popen | None = None
        self.jobs = 0

    def start(self) -> None:
        if self.sandbox:
            command = bwrap_command(self.probes, self.library, self.limits, self.environment)
            env = None
        else:
            command = [sys.executable, "-I", "-B", str(WORKER), *([str(self.probes), self.library] if self.probes else [])]
            env = {**self.environment, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env.pop("HOME")
        errors = tempfile.TemporaryFile()  # the worker's own start-up errors (never the students')
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        ready = self._read_frame(120.0)
        if ready is None:
            self.close()
            errors.seek(0)
            said = errors.read()[-3000:].decode(errors="replace").strip()
            raise SandboxUnavailable("the grading worker did not start" + (" in the sandbox" if self.sandbox else "")
                                     + (f"; it said:\n{said}" if said else ""))
        # from here on the worker's stderr is the children's, which nobody reads
        errors.close()

    def _read_frame(self, timeout: float) -> bytes | None:
        fd = self.process.stdout.fileno()

        def read(n: int) -> bytes | None:
            chunks, got = [], 0
            while got < n:
                ready, _, _ = select.select([fd], [], [], timeout)
                if not ready:
                    return None
                chunk = os.read(fd, min(n - got, 1 << 20))
                if not chunk:
                    return None
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)

        head = read(4)
        return None if head is None else read(struct.unpack(">I", head)[0])

    def run(self, request: dict) -> tuple[dict, bytes]:
        """Send one piece; returns the template's header and the child's raw bytes."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        scratch = f"/tmp/scratch-{self.index}-{self.jobs}" if self.sandbox else f"/tmp/autograder-scratch-{os.getpid()}-{self.index}-{self.jobs}"
        self.jobs += 1
        uid = 61000 + self.index if (self.sandbox and os.geteuid() == 0) else None
        limits = {**asdict(self.limits), "piece_seconds": request.pop("seconds")}
        try:
            _write_frame(self.process.stdin, json.dumps({**request, "scratch": scratch, "uid": uid, "limits": limits}).encode())
            header = self._read_frame(limits["piece_seconds"] + 60.0)
            body = self._read_frame(60.0) if header is not None else None
        except (BrokenPipeError, OSError):
            header = body = None
        if header is None or body is None:  # the template itself died or hung: start a fresh one
            self.close()
            return {"exit_code": None, "signal": None, "timed_out": False, "overflow": False, "worker_lost": True}, b""
        return json.loads(header), body

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None
