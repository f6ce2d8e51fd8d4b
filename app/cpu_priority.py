"""Lower the CPU priority of the current process (and of the children it forks later).

``spectral-topics serve`` runs the API and a worker on one machine; its worker calls
:func:`lower_to_idle_priority` (``worker --idle-priority``) so fits and ingestions only
take CPU time that nothing else wants, and never starve the API's event loop.

Contract: :func:`lower_to_idle_priority` puts the calling process under Linux's
``SCHED_IDLE`` policy (scheduled only when no normal task wants the CPU; inherited across
fork, so a prefork pool's children get it too) and returns ``"SCHED_IDLE"``; where that
policy is not available (other systems) or refused, it raises the niceness to 19, the
lowest normal priority, and returns ``"nice 19"``. It only ever lowers the priority, so it
needs no privileges.
"""
from __future__ import annotations

import os


def lower_to_idle_priority() -> str:
    """Put this process at idle CPU priority; what was applied ("SCHED_IDLE" or "nice 19")."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, idle, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    os.nice(max(0, 19 - os.nice(0)))
    return "nice 19"
