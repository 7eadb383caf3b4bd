"""Who holds a job's lease: the id a JobRunner takes, and whether the process an id names is
known to have died.

An id reads `<place>:<pid>:<nonce>`. The place is the host name, with, on Linux, the boot and the
process-id namespace, the scope in which a pid names one process. The nonce tells apart runners
in one process (the tests run several). A lease normally changes hands only once it has run out;
but a process that finds the holder's place to be its own can see whether that pid still runs,
so a process restarted on the same machine carries on the jobs of the one that died at once.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path


def _place() -> str | None:
    """This machine's boot and pid namespace, or None where they cannot be read (not Linux):
    without them a pid proves nothing, so no holder is ever taken for dead."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text("ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot[:8]}/{namespace.strip('pid:[]')}"


_PLACE = _place()


def new_owner_id() -> str:
    """A lease owner id for a runner in this process, unique among every process's."""
    place = _PLACE or f"{socket.gethostname()}/unknown"
    return f"{place}:{os.getpid()}:{secrets.token_hex(4)}"


def is_dead(owner_id: str) -> bool:
    """Whether the process that took `owner_id` has certainly ended: it ran here (same boot and
    pid namespace) and its pid is gone. False whenever that can't be told (another machine,
    an id of another form, a pid now reused): its lease then has to run out."""
    place, _, rest = owner_id.partition(":")
    pid_text, _, _ = rest.partition(":")
    if _PLACE is None or place != _PLACE or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False
