"""Benchmark: the labeling server under 20 concurrent simulated annotators on loopback.

A study of ``--questions`` questions (2-6 items each, overlap = every annotator) is served by a real
``nerfsculpt label serve`` subprocess (uvicorn). Each annotator thread loops: fetch its next
question (``GET /api/state``), submit a random best/worst answer (``POST /api/answer``, durable:
committed with ``synchronous=FULL`` before the response). Prints p50 / p95 / max latency of both
calls and the throughput. Target: p95 < 50 ms. Usage::

    python benchmarks/label_app.py                         # 20 annotators x 50 questions, no pause
    python benchmarks/label_app.py --think 1               # ~1 s between answers (a fast human)
    python benchmarks/label_app.py --annotators 40 --questions 100
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from nerfsculpt.app.process import ServerProcess
from nerfsculpt.preferences.store import Item, PreferenceStore


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds each annotator waits between answering and fetching (0: saturate the server)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        rng = random.Random(0)
        with PreferenceStore(db) as store:
            store.create_study("bench", overlap=args.annotators)
            store.add_questions("bench", [[Item("synthetic", "h", seed=s) for s in rng.sample(range(1000),
                                                                                               rng.randint(2, 6))]
                                          for _ in range(args.questions)])
        server = ServerProcess(db)
        fetch: list[float] = []
        submit: list[float] = []
        lock = threading.Lock()

        def annotator(name: str) -> None:
            local = random.Random(name)
            while True:
                start = time.perf_counter()
                with urllib.request.urlopen(f"{server.url}api/state?annotator={name}") as response:
                    state = json.loads(response.read())
                took = time.perf_counter() - start
                question = state["question"]
                if question is None:
                    return
                best, worst = local.sample(range(len(question["items"])), 2)
                body = json.dumps({"question_id": question["id"], "annotator": name, "best": best,
                                   "worst": worst}).encode()
                request = urllib.request.Request(f"{server.url}api/answer", data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                start = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    response.read()
                with lock:
                    fetch.append(took)
                    submit.append(time.perf_counter() - start)
                time.sleep(local.uniform(0.5, 1.5) * args.think)

        threads = [threading.Thread(target=annotator, args=(f"annotator{k}",)) for k in range(args.annotators)]
        wall = time.perf_counter()
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.stop()
        wall = time.perf_counter() - wall
        with PreferenceStore(db, create=False) as store:
            stored = len(store.answers("bench"))

    print(f"{args.annotators} concurrent annotators (think time {args.think} s), "
          f"{len(submit)} answers ({stored} in the database), "
          f"{wall:.1f} s, {len(submit) / wall:.0f} answers/s")
    print(f"{'call':<22}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}")
    for name, values in (("GET /api/state", fetch), ("POST /api/answer", submit)):
        print(f"{name:<22}{1000 * statistics.median(values):>8.1f}{1000 * _percentile(values, 0.95):>8.1f}"
              f"{1000 * max(values):>8.1f}")
    p95 = max(_percentile(fetch, 0.95), _percentile(submit, 0.95))
    print(f"target p95 < 50 ms: {'met' if p95 < 0.05 else 'NOT met'} ({1000 * p95:.1f} ms)")


if __name__ == "__main__":
    main()
