"""The worker manager's state calls run with SIGTERM/SIGINT held (notes.cli.guard_worker_manager):
a stop signal's handler runs after such a call, never in the middle of it."""

from __future__ import annotations

import os
import signal

from sanic.worker.manager import WorkerManager

from notes.cli import _signals_held, guard_worker_manager


def test_a_stop_signal_waits_for_the_call_in_progress():
    order: list[str] = []

    def call() -> str:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the call
        order.append("call finished")
        return "done"

    previous = signal.signal(signal.SIGTERM, lambda *_: order.append("handler"))
    try:
        assert _signals_held(call)() == "done"
        order.append("after")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert order == ["call finished", "handler", "after"]


def test_sanic_s_monitor_calls_are_guarded_once():
    guard_worker_manager()
    guard_worker_manager()
    for name in ("_sync_states", "_cleanup_non_tracked_workers", "_all_workers_ack"):
        method = getattr(WorkerManager, name)
        assert method.notes_guarded
        assert not getattr(method.__wrapped__, "notes_guarded", False)  # wrapped once
