"""End to end in headless Chromium: label with mouse and keyboard, undo, reload, check the database;
keys pressed while an answer is saved, the layout at 1280x900 and while images load, no failing request.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` Python package; the
browser is never downloaded (no ``playwright install``).
"""


import pytest

from nerfsculpt.app.process import ServerProcess as Server
from nerfsculpt.cli import main
from nerfsculpt.preferences.store import PreferenceStore


@pytest.mark.slow
def test_label_with_mouse_and_keyboard_undo_and_reload(bank, tmp_path, browser_page):
    from playwright.sync_api import expect

    db = tmp_path / "ui.sqlite"
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--study", "ui", "--items", "3",
                 "--questions", "4"]) == 0
    server = Server(db)
    page = browser_page
    progress = page.locator("#progress")
    try:
        page.goto(server.url)
        page.fill("#name", "tester")
        page.click("#start")
        expect(progress).to_have_text("0 / 4 answered")
        expect(page.locator(".card")).to_have_count(3)
        page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.naturalWidth > 0)")
        assert page.locator(".card img").first.get_attribute("src").endswith("/front")
        # question 1 with the mouse: best = card 3, worst = card 1
        page.locator('.card[data-slot="2"]').click()
        expect(page.locator(".card.best")).to_have_count(1)
        page.locator('.card[data-slot="0"]').click()
        expect(progress).to_have_text("1 / 4 answered")
        # question 2 with the keyboard, then undo it and answer differently
        page.keyboard.press("2")
        page.keyboard.press("3")
        expect(progress).to_have_text("2 / 4 answered")
        page.keyboard.press("u")
        expect(progress).to_have_text("1 / 4 answered")
        expect(page.locator("#status")).to_contain_text("undone")
        page.keyboard.press("1")
        page.keyboard.press("2")
        expect(progress).to_have_text("2 / 4 answered")
        # question 3: full ranking by keys (the last item is implied)
        page.keyboard.press("f")
        page.keyboard.press("3")
        page.keyboard.press("1")
        expect(progress).to_have_text("3 / 4 answered")
        # reload: the name is remembered and the progress comes from the server
        page.reload()
        expect(progress).to_have_text("3 / 4 answered")
        expect(page.locator("#who")).to_have_text("tester")
        page.click("#cant")
        expect(page.locator("#done")).to_be_visible()
    finally:
        server.stop()

    with PreferenceStore(db, create=False) as store:
        questions = store.questions("ui")
        slot = {q.id: {item: k for k, item in enumerate(q.item_ids)} for q in questions}
        answers = store.answers("ui", include_retracted=True)
        active = [a for a in answers if a.retracted is None]
        retracted = [a for a in answers if a.retracted is not None]
    assert [a.annotator for a in active] == ["tester"] * 4
    assert len(retracted) == 1 and (slot[retracted[0].question_id][retracted[0].best],
                                     slot[retracted[0].question_id][retracted[0].worst]) == (1, 2)
    by_question = {a.question_id: a for a in active}
    q1, q2, q3, q4 = (q.id for q in questions)
    assert (slot[q1][by_question[q1].best], slot[q1][by_question[q1].worst]) == (2, 0)
    assert (slot[q2][by_question[q2].best], slot[q2][by_question[q2].worst]) == (0, 1)
    assert [slot[q3][i] for i in by_question[q3].ranking] == [2, 0, 1]
    assert by_question[q4].cant_decide


@pytest.fixture
def serve_study(bank, tmp_path):
    """``serve_study(items, questions)``: serve a new study of the tiny bank (once per test); ``(db, url)``."""
    servers = []

    def serve(items: int, questions: int = 3):
        db = tmp_path / "ui.sqlite"
        assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--study", "ui", "--items", str(items),
                     "--questions", str(questions)]) == 0
        servers.append(Server(db))
        return db, servers[-1].url

    yield serve
    for server in servers:
        server.stop()


def _log_in(page, url: str) -> None:
    page.goto(url)
    page.fill("#name", "tester")
    page.click("#start")


def _images_loaded(page) -> None:
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth)")


@pytest.mark.slow
def test_keys_pressed_while_an_answer_is_saved_are_ignored(serve_study, browser_page):
    from playwright.sync_api import expect

    db, url = serve_study(items=2)
    page = browser_page
    held = []  # answer requests, held until the keys are pressed
    page.route("**/api/answer", lambda route: held.append(route))
    _log_in(page, url)
    expect(page.locator(".card")).to_have_count(2)
    page.keyboard.press("1")  # 2 items: best = 1, worst = 2, submitted at once
    for key in "0s2":
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert len(held) == 1, "a key pressed while an answer was being saved sent another request"
    held[0].continue_()
    page.unroute("**/api/answer")
    expect(page.locator("#progress")).to_have_text("1 / 3 answered")
    page.keyboard.press("0")
    expect(page.locator("#progress")).to_have_text("2 / 3 answered")
    assert page.locator("#status").text_content() == ""
    with PreferenceStore(db, create=False) as store:
        q1, q2 = store.questions("ui")[:2]
        answers = [(a.question_id, a.best, a.worst, a.cant_decide) for a in store.answers("ui", include_retracted=True)]
    assert answers == [(q1.id, q1.item_ids[0], q1.item_ids[1], False), (q2.id, None, None, True)]


@pytest.mark.slow
def test_cards_keep_their_size_while_images_load(serve_study, browser_page):
    from playwright.sync_api import expect

    _, url = serve_study(items=3)
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    held = []  # image requests, held until the cards are measured
    page.route("**/images/**", lambda route: held.append(route))
    _log_in(page, url)
    expect(page.locator(".card")).to_have_count(3)
    for _ in range(100):
        if len(held) == 9:  # 3 views of 3 items
            break
        page.wait_for_timeout(50)
    assert len(held) == 9
    loading = [page.locator(".card").nth(k).bounding_box() for k in range(3)]
    for route in held:
        route.continue_()
    page.unroute("**/images/**")
    _images_loaded(page)
    loaded = [page.locator(".card").nth(k).bounding_box() for k in range(3)]
    assert loading == loaded


@pytest.mark.slow
def test_six_items_and_the_buttons_fit_a_1280x900_window(serve_study, browser_page):
    from playwright.sync_api import expect

    _, url = serve_study(items=6)
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    _log_in(page, url)
    expect(page.locator(".card")).to_have_count(6)
    _images_loaded(page)
    for rgb in (False, True):
        if rgb:
            page.keyboard.press("r")
            _images_loaded(page)
        for element in [*page.locator(".card").all(), *page.locator("#controls button, #controls label").all()]:
            box = element.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (rgb, element, box)
            assert box["y"] >= 0 and box["y"] + box["height"] <= 900, (rgb, element, box)


@pytest.mark.slow
def test_no_request_of_the_page_fails(serve_study, browser_page):
    from playwright.sync_api import expect

    _, url = serve_study(items=3)
    page = browser_page
    failed = []
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("response", lambda response: response.status >= 400 and failed.append((response.url, response.status)))
    _log_in(page, url)
    expect(page.locator(".card")).to_have_count(3)
    _images_loaded(page)
    page.keyboard.press("0")
    expect(page.locator("#progress")).to_have_text("1 / 3 answered")
    _images_loaded(page)
    icon = page.evaluate("""async () => {
        const link = document.querySelector("link[rel~='icon']");
        const response = link && await fetch(link.href);
        return response && [response.status, response.headers.get("content-type")];
    }""")
    assert icon == [200, "image/svg+xml"], "the page names an icon (else Chromium asks for /favicon.ico: 404)"
    assert failed == []
