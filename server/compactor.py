"""Compaction while serving: requests coalesce, the work happens beside the loop.

Requests (SIGUSR1, COMPACT, the automatic policy) are level-triggered: a
request while idle starts one compaction; any number of requests while one
runs cause exactly one more afterwards.

How the work runs is the store's compaction job's to say (storage.CompactionJob), not
the engine's name:

* a job that `forks` (the log engine) -- the Redis BGREWRITEAOF way. The loop
  begins the job, forks a child that runs `job.run` (a pure function of the
  job) and exits with `os._exit`; the child reports progress through a pipe
  the loop watches. SIGCHLD comes through the signal pipe; the loop reaps the
  child (`waitpid(-1, WNOHANG)` until nothing is left: SIGCHLD coalesces too)
  and finishes the job on exit status 0, or discards the output otherwise.
* a job in steps (the sqlite engine: a SQLite connection must not cross a
  fork) -- one short `job.step()` per loop pass, between client events.

Either way the store applies a finished job a batch of keys per loop pass.

The child starts from a clean state: default signal dispositions, no wakeup
fd (so a signal sent to it can never reach the parent's loop), every
inherited descriptor but its progress pipe closed (no listening socket, no
client connection, no PID file), and it dies with the parent
(PR_SET_PDEATHSIG), so a SIGKILLed server never leaves a child writing into
the data directory of its successor.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Generator

from storage import CompactionJob, CompactionResult, StorageError, Store, StoreStats

from .signals import HANDLED, reset_in_child

log = logging.getLogger("kvd.server")

# Keys re-pointed per loop pass when a compaction is applied: ~0.2 ms of loop time,
# so the requests of those passes barely notice (4096 cost p99 a factor of 2.5).
FINISH_BATCH = 512
_PR_SET_PDEATHSIG = 1


class AutoPolicy:
    """When to compact unasked: dead bytes over a ratio of live bytes and over a minimum size
    (Redis's auto-aof-rewrite-percentage / auto-aof-rewrite-min-size), checked at most once a
    second, with exponential back-off after failed compactions."""

    def __init__(self, enabled: bool, ratio: float, min_bytes: int) -> None:
        self.enabled = enabled
        self.ratio = ratio
        self.min_bytes = min_bytes
        self.next_check = 0.0
        self.not_before = 0.0

    def due(self, stats: Callable[[], StoreStats], now: float) -> bool:
        """`stats` (the store's) is only called when a check is due: at most once a second."""
        if not self.enabled or now < self.next_check or now < self.not_before:
            return False
        self.next_check = now + 1.0
        figures = stats()
        dead = figures.dead_bytes
        return dead >= self.min_bytes and dead >= self.ratio * max(figures.live_bytes, 1)

    def failed(self, consecutive: int, now: float) -> float:
        delay = min(3600.0, 10.0 * 2 ** (consecutive - 1))
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.not_before = 0.0


class Compactor:
    """Coalesced compaction requests and the one compaction that may be running."""

    def __init__(self, store: Store, policy: AutoPolicy, watch: Callable[[int, Callable], None],
                 unwatch: Callable[[int], None], rate_limit: float = 0.0,
                 on_fork: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.policy = policy
        self.rate_limit = rate_limit  # bytes/s of segments the child reads; 0: no limit
        self.on_fork = on_fork  # told how long each fork took, in ns (LATENCY's "fork")
        self._watch, self._unwatch = watch, unwatch  # register an fd with the loop
        self.pending = False
        self.requested = self.started = self.completed = self.failed = 0
        self.consecutive_failures = 0
        self.last_status = "none"
        self.last_duration_s = 0.0
        self.last_reclaimed = 0
        self.bytes_done = self.bytes_total = 0
        self._plan: CompactionJob | None = None  # the running compaction
        self._child: int | None = None
        self._progress_fd = -1
        self._progress_buffer = b""
        self._child_error: str | None = None
        # the store's finish of a job, advanced one batch per pass
        self._finisher: Generator[None, None, CompactionResult] | None = None
        self._started_at = 0.0

    @property
    def in_progress(self) -> bool:
        return self._plan is not None

    @property
    def child_pid(self) -> int | None:
        return self._child

    # -- requests --------------------------------------------------------------------

    def request(self, source: str) -> None:
        self.requested += 1
        if not self.pending:
            log.info("compaction requested (%s)%s", source,
                     "; one more will follow the running one" if self.in_progress else "")
        self.pending = True

    def tick(self) -> None:
        """Between loop passes: start what is pending, advance a sliced compaction."""
        if self._finisher is not None:
            self._finish_step()
            return
        if self._plan is not None:
            if self._child is None:
                self._step()
            return
        now = time.monotonic()
        if not self.pending and self.policy.due(self.store.stats, now):
            log.info("automatic compaction: dead bytes over the threshold")
            self.requested += 1
            self.pending = True
        if self.pending:
            self.pending = False
            self._start()

    def wants_ticks(self) -> bool:
        """True while a sliced compaction (or a sliced finish) needs the loop back at once."""
        return self._plan is not None and self._child is None

    def _finish_step(self) -> None:
        assert self._finisher is not None
        try:
            next(self._finisher)
            return
        except StopIteration as done:
            result = done.value
        except StorageError as exc:
            self._finisher = None
            plan, self._plan = self._plan, None
            self._abort(plan)
            self._failed(f"could not apply the child's output: {exc}")
            return
        self._finisher = None
        self._plan = None
        self._succeeded(result)

    # -- starting ----------------------------------------------------------------------

    def _start(self) -> None:
        self.started += 1
        self._started_at = time.monotonic()
        try:
            self._plan = self.store.begin_compaction()
        except (StorageError, OSError) as exc:
            self._plan = None
            self._failed(f"could not begin: {exc}")
            return
        self.bytes_done, self.bytes_total = 0, self._plan.bytes_total
        if self._plan.forks:
            self._fork()
        else:
            log.info("compaction started: %s", self._plan.description)

    def _fork(self) -> None:
        plan = self._plan
        assert plan is not None
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        parent = os.getpid()
        # Signals stay blocked across the fork until the child has reset its
        # handlers and wakeup fd: one arriving in between would otherwise run the
        # parent's handler in the child and write into the parent's signal pipe.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            started = time.perf_counter_ns()
            pid = os.fork()
            if pid == 0:
                _child_main(plan, write_fd, parent, self.rate_limit)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self.on_fork is not None:
            self.on_fork(time.perf_counter_ns() - started)
        os.close(write_fd)
        self._child = pid
        self._progress_fd = read_fd
        self._progress_buffer = b""
        self._watch(read_fd, self._read_progress)
        log.info("compaction started in child PID %d: %s", pid, plan.description)

    # -- progress and the end of a compaction -------------------------------------------

    def _read_progress(self) -> None:
        while True:
            try:
                data = os.read(self._progress_fd, 4096)
            except BlockingIOError:
                break
            if not data:
                self._unwatch(self._progress_fd)
                break
            self._progress_buffer += data
        *lines, self._progress_buffer = self._progress_buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"P "):
                done, total = line[2:].split()
                self.bytes_done, self.bytes_total = int(done), int(total)
            elif line.startswith(b"E "):
                self._child_error = line[2:].decode(errors="replace")

    def reap(self) -> None:
        """SIGCHLD: collect every child that ended; finish or discard its compaction."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid != self._child:
                log.info("reaped unknown child PID %d (%s)", pid, _describe(status))
                continue
            self._child_ended(status)

    def _child_ended(self, status: int) -> None:
        self._read_progress()
        self._close_progress()
        self._child = None
        plan, self._plan = self._plan, None
        if plan is None:
            return
        if os.waitstatus_to_exitcode(status) == 0:
            # Applied a batch of keys per loop pass (see LogStore.finish_steps).
            self._plan = plan
            self._finisher = self.store.finish_steps(plan, batch=FINISH_BATCH)
            return
        self._abort(plan)
        reason, self._child_error = self._child_error, None
        self._failed(f"child {_describe(status)}" + (f": {reason}" if reason else ""))

    def _step(self) -> None:
        plan = self._plan
        assert plan is not None
        try:
            done = plan.step()
            self.bytes_done = getattr(plan, "bytes_done", 0)
            if not done:
                return
            self._finisher = self.store.finish_steps(plan, batch=FINISH_BATCH)
        except StorageError as exc:
            self._plan = None
            self._abort(plan)
            self._failed(str(exc))

    def _succeeded(self, result) -> None:
        self.completed += 1
        self.consecutive_failures = 0
        self.policy.succeeded()
        self.last_status = "ok"
        self.last_reclaimed = result.reclaimed
        self.last_duration_s = time.monotonic() - self._started_at
        self.bytes_done = self.bytes_total
        log.info("compaction done in %.2f s: %d bytes before, %d after, %d reclaimed",
                 self.last_duration_s, result.bytes_before, result.bytes_after, result.reclaimed)

    def _failed(self, reason: str) -> None:
        self.failed += 1
        self.consecutive_failures += 1
        self.last_status = "failed"
        self.last_duration_s = time.monotonic() - self._started_at
        delay = self.policy.failed(self.consecutive_failures, time.monotonic())
        log.error("compaction failed (%s); the data is unchanged%s", reason,
                  f"; automatic compaction waits {delay:.0f} s" if self.policy.enabled else "")

    def _abort(self, plan: CompactionJob | None) -> None:
        if plan is None:
            return
        try:
            self.store.abort_compaction(plan)
        except StorageError as exc:
            log.error("discarding the compaction output failed: %s", exc)

    def _close_progress(self) -> None:
        if self._progress_fd >= 0:
            self._unwatch(self._progress_fd)
            os.close(self._progress_fd)
            self._progress_fd = -1

    # -- shutting down -------------------------------------------------------------------

    def stop(self) -> None:
        """Drain: forget pending requests; stop a running compaction and remove its output."""
        self.pending = False
        if self._plan is None:
            return
        plan, self._plan = self._plan, None
        self._finisher = None  # abort_compaction below completes a finish that has begun
        if self._child is not None:
            pid, self._child = self._child, None
            log.info("stopping the compaction child PID %d", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            except ProcessLookupError:
                pass
            self._close_progress()
        self._abort(plan)
        log.info("compaction stopped; its partial output was removed")

    def info(self) -> dict:
        return {
            "compactions_requested": self.requested,
            "compactions_started": self.started,
            "compactions_completed": self.completed,
            "compactions_failed": self.failed,
            "compaction_in_progress": int(self.in_progress),
            "compaction_pending": int(self.pending),
            "compaction_child_pid": self._child or 0,
            "compaction_bytes_done": self.bytes_done,
            "compaction_bytes_total": self.bytes_total,
            "last_compaction_status": self.last_status,
            "last_compaction_duration_s": f"{self.last_duration_s:.3f}",
            "last_compaction_reclaimed_bytes": self.last_reclaimed,
            "auto_compaction": int(self.policy.enabled),
        }

    def running_for_s(self) -> float | None:
        """Seconds the running compaction has taken so far; None when none runs."""
        return time.monotonic() - self._started_at if self.in_progress else None


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _child_main(plan: CompactionJob, progress_fd: int, parent: int, rate_limit: float
                ) -> None:
    """The compaction child. Never returns; never runs the parent's cleanup code."""
    code = 1
    try:
        _die_with_parent(parent)  # first: a child must never outlive its server
        os.closerange(3, progress_fd)  # no listener, client, PID file, lock or log
        os.closerange(progress_fd + 1, _max_fd())
        logging.disable(logging.CRITICAL)  # the log file's descriptor is closed
        # The server's requests come first: the child gets the CPU and the disk
        # only when nothing else wants them.
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            os.nice(19)
        _idle_io_priority()
        reset_in_child()  # last: signals stay blocked until the child is fully set up

        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            try:
                os.write(progress_fd, b"P %d %d\n" % (done, total))
            except BlockingIOError:
                pass  # the parent is busy; the next report will do
            if rate_limit:  # stay at or under rate_limit bytes/s of segments read
                ahead = done / rate_limit - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        os.set_blocking(progress_fd, False)
        plan.run(progress)
        code = 0
    except BaseException as exc:  # reported to the parent, which logs it
        try:
            os.set_blocking(progress_fd, True)
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            os.write(progress_fd, b"E " + message.encode(errors="replace")[:3000] + b"\n")
        except OSError:
            pass
    finally:
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this child when the server dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _idle_io_priority() -> None:
    """ioprio_set(IOPRIO_CLASS_IDLE): the child's disk I/O waits for the server's (Linux,
    with an I/O scheduler that honours priorities, such as mq-deadline or bfq)."""
    syscall_numbers = {"x86_64": 251, "aarch64": 30}
    number = syscall_numbers.get(os.uname().machine)
    if number is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(number, 1, 0, 3 << 13)  # IOPRIO_WHO_PROCESS, this process, IDLE class
    except (OSError, AttributeError):
        pass


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536

