"""The threads that run sync handlers: reused while idle, never two handlers at once each.

In-process: the race worth testing is between an idle thread giving up and new work being
handed to it, which a short idle time makes frequent.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

from jobqueue.worker.threads import HandlerThreads


def test_every_piece_of_work_runs_once_while_idle_threads_come_and_go() -> None:
    pool = HandlerThreads(idle_exit=0.001)
    lock = threading.Lock()
    ran: Counter[int] = Counter()
    busy: set[int] = set()
    overlaps: list[int] = []
    done = threading.Semaphore(0)
    rng = random.Random(7)

    def work(n: int) -> None:
        tid = threading.get_native_id()
        with lock:
            if tid in busy:
                overlaps.append(n)
            busy.add(tid)
        time.sleep(rng.choice((0, 0, 0.0005, 0.002)))
        with lock:
            busy.discard(tid)
            ran[n] += 1
        done.release()

    total = 3000
    for n in range(total):
        pool.run(lambda n=n: work(n), f"job-{n}")
        if n % 50 == 0:
            time.sleep(0.003)  # long enough for idle threads to give up
    for _ in range(total):
        assert done.acquire(timeout=30)
    assert ran == Counter(range(total))
    assert overlaps == []


def test_a_busy_thread_is_never_handed_more_work() -> None:
    pool = HandlerThreads()
    release = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        release.wait(10)

    # Each blocked piece needs a thread of its own: none waits for another to finish.
    for n in range(5):
        pool.run(block, f"block-{n}")
    for _ in range(5):
        assert started.acquire(timeout=5)
    release.set()


def test_a_forked_child_starts_threads_of_its_own() -> None:
    pool = HandlerThreads()
    ran = threading.Event()
    pool.run(ran.set, "parent")
    assert ran.wait(5)
    time.sleep(0.05)  # the parent's thread is idle now, waiting for more work
    pid = os.fork()
    if pid == 0:  # the child: the parent's idle thread is not here
        in_child = threading.Event()
        pool.run(in_child.set, "child")
        os._exit(0 if in_child.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
