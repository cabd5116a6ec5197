"""Running a child process the way pulumi-command's ``run`` does: stdout, stderr and their interleaving captured,
chosen streams logged line by line while the process runs, stdin fed from memory (never from a file).

Children are tracked so a plugin stopped by the engine (SIGTERM) can stop them too: see :func:`terminate_children`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_CHILDREN: set[subprocess.Popen] = set()
_CHILDREN_LOCK = threading.Lock()
# Bounds every wait on a child's pipes after it exited (a grandchild keeping a pipe open must not hang us).
PIPE_DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    combined: str  # stdout and stderr as they arrived, for error messages


class _LineLogger:
    """Splits what the logged streams write into lines, as Go's ``bufio.Scanner`` over one pipe does."""

    def __init__(self, emit: Callable[[str], None] | None) -> None:
        self.emit = emit
        self.pending = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        if self.emit is None:
            return
        with self.lock:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.emit(line.removesuffix("\r"))

    def close(self) -> None:
        with self.lock:
            rest, self.pending = self.pending, ""
        if rest and self.emit is not None:
            self.emit(rest.removesuffix("\r"))


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    log_line: Callable[[str], None] | None = None,
    log_stdout: bool = True,
    log_stderr: bool = True,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv``; lines of the streams selected by ``log_stdout``/``log_stderr`` go to ``log_line`` as they come."""
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,  # the engine's Ctrl-C goes to the plugin, which decides; see terminate_children
    )
    with _CHILDREN_LOCK:
        _CHILDREN.add(process)
    try:
        return _communicate(process, stdin, log_line, log_stdout, log_stderr, timeout)
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(process)


def _communicate(
    process: subprocess.Popen,
    stdin: str | None,
    log_line: Callable[[str], None] | None,
    log_stdout: bool,
    log_stderr: bool,
    timeout: float | None,
) -> Completed:
    logger = _LineLogger(log_line)
    out: list[str] = []
    err: list[str] = []
    combined: list[str] = []
    combined_lock = threading.Lock()

    def pump(stream, sink: list[str], logged: bool) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        fd = stream.fileno()
        while True:
            data = os.read(fd, 65536)
            chunk = decoder.decode(data, final=not data)
            if chunk:
                sink.append(chunk)
                with combined_lock:
                    combined.append(chunk)
                if logged:
                    logger.write(chunk)
            if not data:
                break

    def feed() -> None:
        try:
            process.stdin.write(stdin.encode())
        except (BrokenPipeError, OSError):
            pass  # the command did not read all of it: as with Go's session.Stdin, not an error
        finally:
            with contextlib.suppress(OSError):
                process.stdin.close()

    threads = [
        threading.Thread(target=pump, args=(process.stdout, out, log_stdout), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, err, log_stderr), daemon=True),
    ]
    if stdin:
        threads.append(threading.Thread(target=feed, daemon=True))
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        process.wait(timeout=PIPE_DRAIN_SECONDS)
        raise
    finally:
        for thread in threads:
            thread.join(PIPE_DRAIN_SECONDS)
        logger.close()
        process.stdout.close()
        process.stderr.close()
    return Completed(process.returncode, "".join(out), "".join(err), "".join(combined))


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, 9)


def terminate_children() -> None:
    """Stop every running child (and its process group): the plugin is being stopped."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for process in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, 15)
