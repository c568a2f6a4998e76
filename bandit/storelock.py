"""One server per store: the exclusive lock `artwork serve` holds, and that the operator commands
(`artwork policy promote|rollback`) take too, so that they never change what a running server
started from. Light on purpose (no web stack): the CLI imports it."""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Any

__all__ = ["StoreLocked", "lock_store", "unlock_store"]


class StoreLocked(Exception):
    """Another process serves this store."""


_HELD_LOCKS: dict[int, Any] = {}  # descriptor -> PostgreSQL learner lock it stands for


def lock_store(events_path: str | os.PathLike[str]) -> int:
    """Take the store's exclusive lock (flock on EVENTS.lock, mode 0600) and write our pid in it.

    Returns the open descriptor: the lock lasts as long as it stays open (the process's lifetime;
    the kernel drops it when the process dies, even by SIGKILL, so a stale file never blocks).
    Raises StoreLocked naming the holder's pid when another process has it.
    """
    from bandit.events import is_event_log_url

    if is_event_log_url(str(events_path)):
        # A log on PostgreSQL: other machines cannot see a lock file, so the lock is an advisory
        # lock on its own connection, kept open (like the file) for the process's lifetime.
        from bandit.events_pg import LearnerLockHeld, hold_learner_lock

        try:
            held = hold_learner_lock(str(events_path))
        except LearnerLockHeld as e:
            raise StoreLocked(str(e)) from None
        fd = os.open(os.devnull, os.O_RDONLY)
        _HELD_LOCKS[fd] = held
        return fd
    path = f"{events_path}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise StoreLocked(f"already served by pid {holder} (lock file {path})") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_store(fd: int) -> None:
    """Give the lock of `lock_store` back before the process ends (the operator commands): the
    file lock with its descriptor, a PostgreSQL advisory lock with its connection."""
    held = _HELD_LOCKS.pop(fd, None)
    os.close(fd)
    if held is not None:
        held.close()
