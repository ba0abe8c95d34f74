"""End to end in headless Chromium: label with mouse and keyboard, undo, reload, check the database.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` Python package; the
browser is never downloaded (no ``playwright install``).
"""

import shutil

import pytest

from nerfsculpt.app.process import ServerProcess as Server
from nerfsculpt.cli import main
from nerfsculpt.preferences.store import PreferenceStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


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
