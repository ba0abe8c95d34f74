"""A real uvicorn server killed with SIGKILL during a burst of submissions loses no acknowledged answer."""

import json
import signal
import sqlite3
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from nerfsculpt.app.process import ServerProcess as Server
from nerfsculpt.preferences.store import Item, PreferenceStore

N_QUESTIONS, N_ANNOTATORS = 80, 10  # 800 submissions


@pytest.mark.slow
def test_sigkill_during_a_burst_loses_no_acknowledged_answer(tmp_path):
    db = tmp_path / "burst.sqlite"
    with PreferenceStore(db) as store:
        store.create_study("burst", overlap=N_ANNOTATORS)
        store.add_questions("burst", [[Item("g", seed=2 * q), Item("g", seed=2 * q + 1)] for q in range(N_QUESTIONS)])
        question_ids = [q.id for q in store.questions("burst")]
    server = Server(db)
    acknowledged: list[tuple[int, str, int]] = []
    lock = threading.Lock()
    killed = threading.Event()

    def submit(job: tuple[int, str, int]) -> None:
        question_id, annotator, best = job
        body = json.dumps({"question_id": question_id, "annotator": annotator, "best": best,
                           "worst": 1 - best}).encode()
        request = urllib.request.Request(server.url + "api/answer", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return  # the server is gone: not acknowledged
        if ok:
            with lock:
                acknowledged.append(job)
                if len(acknowledged) == 300:
                    server.process.send_signal(signal.SIGKILL)  # mid-burst, with requests in flight
                    killed.set()

    jobs = [(q, f"annotator{a}", (q + a) % 2) for q in question_ids for a in range(N_ANNOTATORS)]
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(submit, jobs))
    finally:
        server.stop()
    assert killed.is_set() and len(acknowledged) >= 300
    integrity = sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"
    with PreferenceStore(db, create=False) as store:
        items = {q.id: q.item_ids for q in store.questions("burst")}
        stored = {(a.question_id, a.annotator, items[a.question_id].index(a.best)) for a in store.answers("burst")}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged answers were lost"
    assert len(stored) < len(jobs), "the kill happened before the burst ended"
