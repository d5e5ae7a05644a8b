"""The sandbox side of grading: a warm template process that forks one child per graded piece.

This file runs *inside* the sandbox and imports nothing from the ``autograder`` package (the
grader's checks, the solutions and the gradebook are not visible in there); the plain-data
wire encoding (``wire.py``, the grader decodes with the same file) is loaded by path. It is started
once per grading slot as ``python -I -B worker.py PROBES.py LIBRARY``, imports torch, gencore,
the unit's probes and its reference module (the slow part, paid once), and then serves requests on stdin/stdout:

    grader -> template : one frame, a JSON request (the student's statements, one piece)
    template -> grader : one frame, a JSON header (exit status, timed out, seconds) and one
                         frame with the bytes the child wrote, for the grader to decode

A frame is a 4-byte big-endian length and that many bytes. The child runs the student's code
and the probes of one piece, and writes frames of plain data (numbers, strings, arrays as
base64 bytes with dtype and shape; never pickle) to a pipe of its own. The template (root in
the sandbox) never runs student code: it only forks, enforces the wall-clock limit, kills
everything the child left behind and relays the bytes. The verdict is computed by the grader,
outside.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random
import resource
import select
import shutil
import signal
import struct
import sys
import time
import traceback
import types

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import gencore  # noqa: E402
import matplotlib.pyplot  # noqa: E402,F401  (the notebooks' setup cell imports it)
import torch.nn.functional  # noqa: E402,F401
from gencore import data  # noqa: E402,F401

def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# the wire encoding, loaded by path: this worker imports nothing from the ``autograder`` package
wire = _load("autograder_wire", os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py"))


def write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(wire.frame(payload))
    while view:
        view = view[os.write(fd, view):]


def read_exact(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(stream) -> bytes | None:
    head = read_exact(stream, 4)
    return None if head is None else read_exact(stream, struct.unpack(">I", head)[0])


# ----------------------------------------------------------------------------------------------
# the child: one piece of one submission
# ----------------------------------------------------------------------------------------------

# the unit's gencore module (the declaration's ``Unit.library``), captured by ``main`` before any wrapping:
# the probes pass its functions where a check needs the reference (e.g. kl_fn=ref.gaussian_kl),
# so such calls never count as forbidden
REFERENCE = types.SimpleNamespace()


def _install_forbidden(names: list[str], called: list[str]) -> None:
    """Replace each dotted name (``gencore.vae.gaussian_kl``) by a wrapper that records its call."""
    for dotted in names:
        module_name, _, attr = dotted.rpartition(".")
        try:  # import it now: a module the student imports later would bring unwrapped functions
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        original = getattr(module, attr, None)
        if original is None:
            continue

        def wrapper(*args, _original=original, _dotted=dotted, **kwargs):
            called.append(_dotted)
            return _original(*args, **kwargs)

        setattr(module, attr, wrapper)


def _exec_statements(statements: list[dict], namespace: dict) -> list[str]:
    """Run the student's top-level statements; a failing one is retried once the others ran."""
    pending, problems = list(statements), {}
    while pending:
        failed = []
        for statement in pending:
            try:
                exec(compile(statement["source"], f"<{statement['where']}>", "exec"), namespace)
            except BaseException as error:  # noqa: BLE001 (student code: SystemExit included)
                problems[statement["where"]] = f"{type(error).__name__}: {error}"[:300]
                failed.append(statement)
        if len(failed) == len(pending):
            break
        pending = failed
    return [f"{where}: {problems[where]}" for where in (s["where"] for s in pending)]


def run_child(request: dict, out: int, sandboxed: bool) -> None:
    limits = request["limits"]
    os.setsid()
    scratch = request["scratch"]
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    uid = request.get("uid")
    if uid is not None:  # root in the sandbox: become an unprivileged user (drops every capability)
        os.chown(scratch, uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    vm_bytes = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                vm_bytes = int(line.split()[1]) * 1024
    address_space = vm_bytes + int(limits["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    cpu = int(limits["piece_seconds"]) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
    file_size = int(limits["file_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # the student's output goes nowhere: it can neither cost points nor fill a disk
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir(scratch)
    os.environ.update(HOME=scratch, TMPDIR=scratch)

    def send(message: dict) -> None:
        write_frame(out, json.dumps(message, allow_nan=True).encode())

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    if request.get("mode") == "notebook":
        run_notebook(request["cells"], send)
        return
    called: list[str] = []
    _install_forbidden(request["forbidden"], called)
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    problems = _exec_statements([{"source": request["setup"], "where": "setup"}], namespace)
    problems += _exec_statements(request["statements"], namespace)
    send({"problems": problems})
    probes = sys.modules["unit_probes"]
    for check, probe in request["checks"]:
        started = time.perf_counter()
        torch.manual_seed(0)
        try:
            result = getattr(probes, probe)(namespace, REFERENCE)
            message = {"check": check, "data": wire.encode(result)}
        except BaseException as error:  # noqa: BLE001 (SystemExit, KeyboardInterrupt: student code)
            frames = traceback.extract_tb(error.__traceback__)
            where = next((f"{f.filename}, line {f.lineno}" for f in reversed(frames) if f.filename.startswith("<")), "")
            message = {"check": check, "error": f"{type(error).__name__}: {error}"[:500], "where": where}
        message["seconds"] = time.perf_counter() - started
        send(message)
    send({"forbidden_called": sorted(set(called)), "done": True})


class _Stderr:
    """Stands for sys.stderr during a cell: keeps the start of what was written."""

    def __init__(self):
        self.text = ""

    def write(self, text) -> int:
        if isinstance(text, str) and len(self.text) < 300:
            self.text += text[: 300 - len(self.text)]
        return len(text) if isinstance(text, str) else 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def run_notebook(cells: list[dict], send) -> None:
    """A plain nbgrader notebook: every code cell in order in one IPython shell, as a kernel would
    run it; one frame per cell (error, whether it wrote to stderr, its displayed result)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.user_ns["__name__"] = "__main__"
    for index, cell in enumerate(cells):
        started = time.perf_counter()
        stderr, saved = _Stderr(), sys.stderr
        sys.stderr = stderr
        try:
            result = shell.run_cell(cell["source"], store_history=False, silent=False)
        finally:
            sys.stderr = saved
        message = {"cell": index, "grade_id": cell.get("grade_id"), "stderr": stderr.text}
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            frames = traceback.extract_tb(error.__traceback__)
            line = next((f.lineno for f in reversed(frames) if f.filename.startswith("<ipython-input") or "ipykernel" in f.filename
                         or f.filename.startswith("/tmp/ipykernel")), getattr(error, "lineno", None))
            message["error"] = f"{type(error).__name__}: {error}"[:500]
            message["where"] = f"{cell['where']}, line {line}" if line else cell["where"]
        elif result.result is not None:
            text = shell.display_formatter.format(result.result)[0].get("text/plain")
            message["text"] = text[:100] if isinstance(text, str) else None
        message["seconds"] = time.perf_counter() - started
        send(message)
    send({"done": True})


# ----------------------------------------------------------------------------------------------
# the template: fork, watch, clean up
# ----------------------------------------------------------------------------------------------


def _kill_leftovers(child: int, sandboxed: bool, status: int | None) -> int | None:
    """Kill everything the child started; returns the child's wait status. In the sandbox's own PID
    namespace that is every process except pid 1 (bwrap's init) and this template: kill(-1)
    reaches exactly those."""
    for _ in range(200):
        try:
            if sandboxed:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            while True:
                pid, raw = os.waitpid(-1, os.WNOHANG)
                if not pid:
                    break
                if pid == child:
                    status = raw
        except ChildProcessError:
            pass
        if status is None:
            time.sleep(0.005)
            continue
        if not sandboxed:
            return status
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
        if not others:
            return status
        time.sleep(0.005)
    return status


def serve() -> None:
    sandboxed = os.environ.get("AUTOGRADER_SANDBOXED") == "1"
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer.fileno()
    write_frame(stdout, json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        raw = read_frame(stdin)
        if raw is None:
            return
        request = json.loads(raw)
        cap = int(request["limits"]["result_mb"]) * 2**20
        read_end, write_end = os.pipe()
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            code = 0
            try:
                os.close(read_end)
                run_child(request, write_end, sandboxed)
            except BaseException:  # noqa: BLE001
                code = 70
                try:
                    write_frame(write_end, json.dumps({"fatal": traceback.format_exc()[-2000:]}).encode())
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
        os.close(write_end)
        deadline = started + float(request["limits"]["piece_seconds"])
        received, size, timed_out, overflow, status = [], 0, False, False, None
        os.set_blocking(read_end, False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_end], [], [], min(left, 0.05))
            finished, raw_status = os.waitpid(child, os.WNOHANG)
            if finished:
                status = raw_status  # what the child wrote is in the pipe now; its own children don't count
            try:
                chunk = os.read(read_end, 1 << 16) if (ready or finished) else None
            except BlockingIOError:
                chunk = None
            while chunk:
                size += len(chunk)
                received.append(chunk)
                if size > cap:
                    break
                try:
                    chunk = os.read(read_end, 1 << 16)
                except BlockingIOError:
                    chunk = None
            if size > cap:
                overflow = True
                break
            if finished or chunk == b"":
                break
        status = _kill_leftovers(child, sandboxed, status)
        os.close(read_end)
        signal_number = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        exit_code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        shutil.rmtree(request["scratch"], ignore_errors=True)
        header = {
            "exit_code": exit_code, "signal": signal_number, "timed_out": timed_out,
            "overflow": overflow, "seconds": time.monotonic() - started,
        }
        write_frame(stdout, json.dumps(header).encode())
        write_frame(stdout, b"".join(received))


if __name__ == "__main__":
    # one grading slot per core; also keeps the OpenMP pool fork-safe
    torch.set_num_threads(1)
    if len(sys.argv) == 3:  # a declared unit: its probes and its reference module
        module = _load("unit_probes", sys.argv[1])
        REFERENCE.__dict__.update(vars(importlib.import_module(sys.argv[2])))
        if hasattr(module, "warm"):
            module.warm()
    elif len(sys.argv) == 1:  # plain nbgrader notebooks, run whole in an IPython shell
        import IPython.core.interactiveshell  # noqa: F401  (imported once, before any fork)
        import warnings

        with warnings.catch_warnings():  # joblib (scikit-learn) warns at import that the sandbox
            warnings.simplefilter("ignore")  # has no /dev/shm; a kernel outside would not: import it quietly
            try:
                import joblib  # noqa: F401
            except ImportError:
                pass
    else:
        sys.exit("usage: worker.py [PROBES.py LIBRARY]")
    serve()
