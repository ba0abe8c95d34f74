"""The labeling API through FastAPI's TestClient: flow, validation, idempotency, tokens, file serving."""

import json

import pytest
from fastapi.testclient import TestClient

from nerfsculpt.app.server import create_app
from nerfsculpt.preferences.store import PreferenceStore


@pytest.fixture
def client(study_db):
    with TestClient(create_app(study_db)) as c:
        yield c


def _state(client, annotator="ann", **params):
    response = client.get("/api/state", params={"annotator": annotator, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _answer(client, **body):
    return client.post("/api/answer", json={"annotator": "ann", **body})


def _db_snapshot(db):
    with PreferenceStore(db, create=False) as store:
        return [(a.question_id, a.annotator, a.best, a.worst, a.retracted is None)
                for a in store.answers(include_retracted=True)]


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", ""), "no external resources"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/favicon.svg").headers["content-type"] == "image/svg+xml"
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404


def test_label_flow_progress_and_undo(client, study_db):
    state = _state(client)
    assert state["study"] == {"name": "pilot", "kind": "ranking"}
    assert state["progress"] == {"answered": 0, "available": 7} and not state["can_undo"]
    question = state["question"]
    assert len(question["items"]) == 3 and question["items"][0]["views"] == ["front", "three_quarter", "profile",
                                                                              "rgb"]
    response = _answer(client, question_id=question["id"], best=2, worst=0)
    assert response.status_code == 200 and response.json()["new"]
    again = _answer(client, question_id=question["id"], best=2, worst=0)
    assert again.status_code == 200 and not again.json()["new"], "re-submitting is idempotent"
    assert again.json()["answer_id"] == response.json()["answer_id"]
    next_state = _state(client)
    assert next_state["question"]["id"] != question["id"] and next_state["progress"]["answered"] == 1
    undone = client.post("/api/undo", json={"annotator": "ann"})
    assert undone.status_code == 200 and undone.json()["question"]["id"] == question["id"]
    assert _db_snapshot(study_db)[0][4] is False, "undo keeps the answer, retracted"
    ranked = _answer(client, question_id=question["id"], ranking=[1, 2, 0])
    assert ranked.status_code == 200
    with PreferenceStore(study_db, create=False) as store:
        (answer,) = store.answers()
        items = store.question(question["id"]).item_ids
        assert answer.ranking == (items[1], items[2], items[0]) and answer.ui_version == "nerfsculpt-label-1"


def test_skip_and_specific_question(client):
    first = _state(client)["question"]["id"]
    second = _state(client, skip=str(first))["question"]["id"]
    assert second != first
    assert _state(client, question=first)["question"]["id"] == first
    assert client.get("/api/state", params={"annotator": "ann", "skip": "x"}).status_code == 422


@pytest.mark.parametrize("body, status, message", [
    ({"question_id": 999, "best": 0, "worst": 1}, 404, "no question"),
    ({"question_id": "QID", "best": 0, "worst": 0}, 422, "different"),
    ({"question_id": "QID", "best": 0, "worst": 7}, 422, "item position"),
    ({"question_id": "QID", "best": 0}, 422, "best and worst"),
    ({"question_id": "QID", "best": True, "worst": 1}, 422, "item position"),
    ({"question_id": "QID", "ranking": [0, 1]}, 422, "every item"),
    ({"question_id": "QID", "best": 0, "worst": 1, "annotator": ""}, 422, "annotator"),
    ({"question_id": "QID", "best": 0, "worst": 1, "hack": 1}, 422, "unknown fields"),
])
def test_invalid_answers_are_rejected_and_change_nothing(client, study_db, body, status, message):
    qid = _state(client)["question"]["id"]
    body = {k: (qid if v == "QID" else v) for k, v in body.items()}
    response = _answer(client, **body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert _db_snapshot(study_db) == []


def test_bad_json_oversized_and_conflicts(client, study_db):
    qid = _state(client)["question"]["id"]
    bad = client.post("/api/answer", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["detail"]
    huge = client.post("/api/answer", content=json.dumps({"question_id": qid, "x": "a" * 20000}).encode())
    assert huge.status_code == 413
    assert _answer(client, question_id=qid, best=0, worst=1).status_code == 200
    conflict = _answer(client, question_id=qid, best=1, worst=0)
    assert conflict.status_code == 409 and "undo" in conflict.json()["detail"]
    bob = client.post("/api/answer", json={"question_id": qid, "annotator": "bob", "best": 0, "worst": 2})
    assert bob.status_code == 200
    finished = client.post("/api/answer", json={"question_id": qid, "annotator": "carol", "best": 0, "worst": 2})
    assert finished.status_code == 409 and "finished" in finished.json()["detail"]  # overlap 2 reached
    assert client.post("/api/undo", json={"annotator": "nobody"}).status_code == 409
    assert len(_db_snapshot(study_db)) == 2


def test_images_only_from_the_bank(client, study_db):
    item = _state(client)["question"]["items"][0]
    image = client.get(f"/images/{item['item_id']}/front")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/images/{item['item_id']}/mesh").status_code == 404
    assert client.get("/images/9999/front").status_code == 404
    assert client.get(f"/images/{item['item_id']}/..%2F..%2Fmanifest.json").status_code == 404
    assert client.get("/images/../../etc/passwd").status_code == 404


def test_token_is_required_when_set(study_db):
    with TestClient(create_app(study_db, token="s3cret")) as client:
        assert client.get("/api/state", params={"annotator": "a"}).status_code == 401
        assert client.get("/").status_code == 401
        assert client.get("/api/state", params={"annotator": "a"}, headers={"X-Nerfsculpt-Token": "wrong"}
                          ).status_code == 401
        ok = client.get("/api/state", params={"annotator": "a"}, headers={"X-Nerfsculpt-Token": "s3cret"})
        assert ok.status_code == 200
        page = client.get("/", params={"token": "s3cret"})
        assert page.status_code == 200 and "nerfsculpt_token" in page.headers["set-cookie"]
        assert client.get("/api/state", params={"annotator": "a"}).status_code == 200  # the cookie now


def test_database_must_exist_and_study_must_be_chosen(tmp_path, study_db):
    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "missing.sqlite")
    with PreferenceStore(study_db) as store:
        store.create_study("second")
    with pytest.raises(ValueError, match="--study"):
        create_app(study_db)
    assert create_app(study_db, study="second").state.service.study == "second"


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "/api/answer", {"question_id": 10**30, "best": 0, "worst": 1}, 404),
    ("post", "/api/answer", {"question_id": -10**30, "best": 0, "worst": 1}, 404),
    ("get", f"/api/state?annotator=ann&question={10**23}", None, 404),
    ("get", f"/api/state?annotator=ann&skip=1,{10**23}", None, 422),
    ("get", f"/images/{10**23}/front", None, 404),
])
def test_integers_beyond_sqlite_range_are_client_errors(client, study_db, method, path, body, status):
    response = client.request(method, path, json=None if body is None else {"annotator": "ann", **body})
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str)
    assert _db_snapshot(study_db) == []


def test_deep_or_huge_json_is_400(study_db):
    headers = {"content-type": "application/json"}
    with TestClient(create_app(study_db, max_body=300_000)) as client:
        for body in ("[" * 100_000 + "]" * 100_000, "[" * 5000 + "]" * 5000, '{"question_id": ' + "9" * 5000 + "}"):
            for path in ("/api/answer", "/api/undo"):
                response = client.post(path, content=body.encode(), headers=headers)
                assert response.status_code == 400 and "JSON" in response.json()["detail"], response.text
    assert _db_snapshot(study_db) == []


def test_cross_site_writes_are_refused_and_store_nothing(client, study_db):
    qid = _state(client)["question"]["id"]
    body = json.dumps({"question_id": qid, "annotator": "ann", "best": 0, "worst": 1}).encode()
    form = client.post("/api/answer", content=body, headers={"content-type": "text/plain",
                                                               "origin": "http://evil.example"})
    assert form.status_code == 403 and "origin" in form.json()["detail"]
    plain = client.post("/api/answer", content=body, headers={"content-type": "text/plain"})
    assert plain.status_code == 403 and "application/json" in plain.json()["detail"]
    foreign = client.post("/api/answer", content=body, headers={"content-type": "application/json",
                                                                  "origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert _db_snapshot(study_db) == [] and _state(client)["progress"]["answered"] == 0
    same = client.post("/api/answer", content=body, headers={"content-type": "application/json; charset=utf-8",
                                                               "origin": "http://testserver"})
    assert same.status_code == 200, same.text
    undo = client.post("/api/undo", json={"annotator": "ann"}, headers={"origin": "null"})
    assert undo.status_code == 403
    assert [row[4] for row in _db_snapshot(study_db)] == [True], "the answer is not retracted"


@pytest.mark.parametrize("host, status", [
    ("evil.example", 403), ("evil.example:8765", 403), ("127.0.0.1.evil.example", 403), ("", 403),
    ("127.0.0.1:8765", 200), ("localhost:8765", 200), ("LOCALHOST", 200), ("[::1]:8765", 200), ("testserver", 200),
])
def test_only_loopback_hosts_are_served_without_token(client, host, status):
    for path in ("/", "/api/state?annotator=ann", "/static/app.js"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == status, (path, response.text)
        if status == 403:
            assert "Host" in response.json()["detail"]


def test_with_token_any_host_but_no_cross_origin_writes(study_db):
    with TestClient(create_app(study_db, token="s3cret"), headers={"X-Nerfsculpt-Token": "s3cret"}) as client:
        state = client.get("/api/state", params={"annotator": "ann"}, headers={"host": "labeler.lan:8765"})
        assert state.status_code == 200
        body = {"question_id": state.json()["question"]["id"], "annotator": "ann", "best": 0, "worst": 1}
        foreign = client.post("/api/answer", json=body, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert _db_snapshot(study_db) == []
        lan = client.post("/api/answer", json=body, headers={"host": "labeler.lan:8765",
                                                             "origin": "http://labeler.lan:8765"})
        assert lan.status_code == 200, lan.text

