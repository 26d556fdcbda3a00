"""Raw Huey, the P1 baseline: SqliteHuey running N no-op tasks in a consumer of W threads.

Run as `python -m bench.huey_raw --tasks N --workers W --poll 0.1 --dir DIR`; prints one
JSON line. The consumer is configured like quaero's (`initial_delay = max_delay = poll`,
`backoff = 1`, results off, the same SQLite storage settings) and is running before the
first enqueue, as quaero's workers are before a submit. The clock runs from just before
the first enqueue to the end of the last task, so, like quaero's submit-to-finished, it
includes serialising and enqueueing every message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from huey import SqliteHuey
from huey.consumer import Consumer

BATCH = 1000  # messages per enqueue transaction in "bulk" mode, as quaero's fan-out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--enqueue", choices=("bulk", "each"), default="bulk")
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    huey = SqliteHuey("bench", results=False, filename=str(args.dir / "huey.db"), timeout=30)
    lock = threading.Lock()
    done = threading.Event()
    state = {"count": 0, "last": 0.0}

    @huey.task()
    def noop() -> None:
        with lock:
            state["count"] += 1
            if state["count"] >= args.tasks:
                state["last"] = time.time()
                done.set()

    consumer = Consumer(
        huey,
        workers=args.workers,
        worker_type="thread",
        periodic=False,
        initial_delay=args.poll,
        max_delay=args.poll,
        backoff=1.0,
        scheduler_interval=1,
    )
    consumer.start()
    time.sleep(max(0.5, 2 * args.poll))  # let every worker reach its polling loop

    start = time.time()
    if args.enqueue == "bulk":
        storage = huey.storage
        for first in range(0, args.tasks, BATCH):
            n = min(BATCH, args.tasks - first)
            rows = [(storage.name, huey.serialize_task(noop.s()), 0) for _ in range(n)]
            with storage.db(commit=True) as curs:
                curs.executemany("insert into task (queue, data, priority) values (?, ?, ?)", rows)
    else:
        for _ in range(args.tasks):
            noop()
    enqueued = time.time()
    finished = done.wait(timeout=max(60.0, args.tasks / 20))
    consumer.stop(graceful=True)
    if not finished:
        print(json.dumps({"error": f"only {state['count']} of {args.tasks} tasks ran"}))
        return 1
    seconds = state["last"] - start
    print(
        json.dumps(
            {
                "tasks": args.tasks,
                "seconds": round(seconds, 4),
                "enqueue_seconds": round(enqueued - start, 4),
                "rate": round(args.tasks / seconds, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
