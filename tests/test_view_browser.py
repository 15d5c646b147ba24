"""`cotbridge view` pages in a real browser: Debian's Chromium, driven by Playwright from PyPI (no browser download).
The page is opened from a file:// URL; rows render lazily, filters and search change the rows shown, the
side-by-side counts are right, hostile text never runs. Screenshots go to the test's tmp_path, and to bench/results/
when $COTBRIDGE_SCREENSHOTS is set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cotbridge.view import write_view
from tests.conftest import REPO
from tests.view_runs import PAYLOAD, synthesize_run

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine: `make test` installs it (apt-get install chromium)"
)
N = 150  # more than the first chunk of rows the page renders (40), so lazy rendering is exercised


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # the test extra: missing it is a broken setup, not a skip

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("view-browser")
    a = synthesize_run(tmp / "quickstart", N, payload_at=3, name=PAYLOAD)
    b = synthesize_run(tmp / "quickstart_b", N, seed=1, accuracy={"finetune_cot": 0.5}, report=False)
    return tmp, a, b


def open_page(browser, path: Path, fragment: str = ""):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(path.resolve().as_uri() + fragment)
    page.wait_for_selector("article.q")
    return page, problems


def shown(page) -> int:
    return int(page.text_content("#count").split(" of ")[0])


def until(check, timeout_s: float = 10.0) -> None:
    """Poll from Python: the page's CSP forbids the string evaluation page.wait_for_function would use."""
    import time

    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, "the page did not get there in time"
        time.sleep(0.05)


def keep(page, tmp_path: Path, name: str) -> Path:
    """The top of the page (summary, toolbar, first questions) as a PNG."""
    shot = tmp_path / name
    # A tall window rather than a full-page capture: rows outside the window are not painted (content-visibility),
    # and a sticky toolbar is drawn where the scroll left it.
    page.set_viewport_size({"width": 1300, "height": 2600})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    page.screenshot(path=str(shot))
    if os.environ.get("COTBRIDGE_SCREENSHOTS"):
        (REPO / "bench" / "results").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "bench" / "results" / name)
    return shot


def test_rows_filters_search_keys_and_hostile_text(browser, runs, tmp_path):
    tmp, a, _ = runs
    html = write_view([tmp / "quickstart"])
    page, problems = open_page(browser, html)
    total = N + N  # test questions, then the training questions the teacher answered
    assert page.text_content("#count") == f"{total} of {total} questions"
    first = page.locator("article.q").count()
    assert 0 < first < total  # lazily: the first chunk only
    page.mouse.wheel(0, 200000)
    until(lambda: page.locator("article.q").count() > first)

    page.select_option("#f-col-2", "ok")  # finetune_cot right
    assert shown(page) == len(a["right"]["finetune_cot"])
    page.select_option("#f-col-0", "bad")  # ... and zero_shot_cot wrong
    assert shown(page) == len(a["right"]["finetune_cot"] - a["right"]["zero_shot_cot"])
    assert all("✗ zero_shot_cot" in t for t in page.locator("article.q .badges").all_text_contents())
    page.select_option("#f-col-0", "")
    page.select_option("#f-col-2", "")
    page.select_option("#f-verdict", "duplicate")
    dup_questions = {r["example_id"] for recs in a["teacher"].values() for r in recs}
    assert 0 < shown(page) <= len(dup_questions)
    page.select_option("#f-verdict", "")

    page.fill("#search", "test-17")  # a question id: searched with the text
    until(lambda: shown(page) == 1)
    assert page.locator("article.q").count() == 1 and "test-17" in page.text_content("article.q .where")
    page.fill("#search", "")
    until(lambda: shown(page) == total)

    # hostile text is shown as text and never runs
    payload_row = page.locator("#q-3")
    assert PAYLOAD in payload_row.locator(".qtext").text_content()
    assert page.evaluate("window.__pwned") is None and not any("dialog" in p for p in problems)
    assert page.locator("img[src=x]").count() == 0

    # keyboard: j moves to the next question and puts its permalink in the address
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.locator("article.q.current").get_attribute("id") == "q-1"
    assert page.evaluate("location.hash") == "#q=" + "synthetic_coin_flip%3Atest%3Atest-1"
    page.keyboard.press("k")  # back to the first, whose long outputs are folded; o unfolds them
    assert page.locator("#q-0 .fold").count() > 0 and page.locator("#q-0 .fold.open").count() == 0
    page.keyboard.press("o")
    assert page.locator("#q-0 .fold.open").count() == page.locator("#q-0 .fold").count()
    prompt = page.locator("#q-0 .out details.prompt").nth(2)  # finetune_cot's: the question, then " ###"
    prompt.locator("summary").click()
    assert prompt.locator(".text").text_content() == page.locator("#q-0 .qtext").text_content() + " ###"
    assert prompt.locator(".qpart").text_content() == page.locator("#q-0 .qtext").text_content()
    shot = keep(page, tmp_path, "view_quickstart.png")
    assert shot.stat().st_size > 10_000
    assert problems == [], problems


def test_a_permalink_opens_its_question(browser, runs):
    tmp, _, _ = runs
    html = tmp / "quickstart" / "view.html"
    if not html.exists():
        write_view([tmp / "quickstart"])
    page, problems = open_page(browser, html, "#q=synthetic_coin_flip%3Atest%3Atest-120")
    page.wait_for_selector("article.q.current")
    assert page.locator("article.q.current").get_attribute("id") == "q-120"  # beyond the first chunk
    page.wait_for_timeout(300)  # the summary's plots decoded: they must not have pushed the question down
    top = page.locator("#q-120").bounding_box()["y"]
    assert 0 <= top <= 150 and problems == [], top  # at the top of the window, below the sticky toolbar


def test_the_filters_live_in_the_address_so_a_view_can_be_reloaded_and_shared(browser, runs):
    tmp, a, _ = runs
    html = write_view([tmp / "quickstart"])
    page, problems = open_page(browser, html)
    page.select_option("#f-col-2", "ok")  # finetune_cot right
    page.fill("#search", "flips")
    until(lambda: "search=flips" in page.evaluate("location.hash"))
    n = shown(page)
    assert 0 < n <= len(a["right"]["finetune_cot"]) and "c2=ok" in page.evaluate("location.hash")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")  # a question too: filters and question together
    current = page.locator("article.q.current").get_attribute("id")
    page.reload()
    page.wait_for_selector("article.q.current")
    assert shown(page) == n and page.input_value("#f-col-2") == "ok" and page.input_value("#search") == "flips"
    assert page.locator("article.q.current").get_attribute("id") == current
    # a shared link with a filter value the page does not offer: that filter is left alone, the rest applies
    page.goto(html.resolve().as_uri() + "#c2=bogus&c1=bad")
    page.wait_for_selector("article.q")
    assert page.input_value("#f-col-2") == "" and shown(page) == 2 * N - len(a["right"]["vanilla"]) - N
    assert problems == [], problems


def test_a_teacher_file_offers_only_the_choices_its_data_can_meet(browser, runs):
    tmp, _, _ = runs
    html = write_view([tmp / "quickstart" / "teacher" / "synthetic_coin_flip.D3.jsonl"], tmp / "teacher.html")
    page, problems = open_page(browser, html)
    assert page.locator("#accuracy").count() == 0  # no outputs: no accuracy table
    options = " ".join(page.locator("#toolbar option").all_text_contents())
    for absent in ("evaluated", "teacher right, student wrong", "longest output"):
        assert absent not in options
    assert "longest teacher rationale first" in options and page.locator("#f-special").is_hidden()
    assert problems == [], problems


def test_search_marks_its_matches_and_opens_the_folds_that_hold_them(browser, runs):
    tmp, _, _ = runs
    page, problems = open_page(browser, write_view([tmp / "quickstart"]))
    first_fold = page.locator("#q-0 .fold").first  # a long output, folded
    first_fold.locator("xpath=following-sibling::button[1]").click()
    assert "open" in first_fold.get_attribute("class")
    # opened, its fold button moves above the text (below a very long text it would be out of reach)
    assert first_fold.locator("xpath=preceding-sibling::button[1]").text_content().startswith("fold")
    page.fill("#search", "flips the coin")  # in every question; in folded outputs too
    until(lambda: page.locator("article.q mark.hit").count() > 0)
    marks = page.locator("#q-0 mark.hit")
    assert marks.count() >= 2 and {m.lower() for m in marks.all_text_contents()} == {"flips the coin"}
    folded_with_match = page.locator("#q-0 .fold:not(.open) mark.hit")
    assert folded_with_match.count() == 0  # a fold holding a match was opened
    assert problems == [], problems


def test_a_narrow_window_keeps_the_toolbar_out_of_the_way(browser, runs):
    tmp, _, _ = runs
    html = write_view([tmp / "quickstart", tmp / "quickstart_b"])
    page = browser.new_page(viewport={"width": 400, "height": 700})
    page.goto(html.resolve().as_uri())
    page.wait_for_selector("article.q")
    assert page.evaluate("getComputedStyle(document.getElementById('toolbar')).position") == "static"
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 400  # nothing wider than the window


def test_the_summary_reads_without_javascript(browser, runs):
    tmp, a, _ = runs
    html = write_view([tmp / "quickstart"])
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(html.resolve().as_uri())
    assert page.locator("#accuracy").is_visible() and page.locator("#curation").is_visible()
    n = len(a["right"]["finetune_cot"])
    assert f"{n} / {N}" in page.text_content("#accuracy")
    assert "needs JavaScript" in page.text_content("main") and page.locator("article.q").count() == 0
    context.close()


def test_side_by_side_counts_and_flip_filter(browser, runs, tmp_path):
    tmp, a, b = runs
    html = write_view([tmp / "quickstart", tmp / "quickstart_b"])
    page, problems = open_page(browser, html)
    fixed = {m: len(b["right"][m] - a["right"][m]) for m in a["right"]}
    broken = {m: len(a["right"][m] - b["right"][m]) for m in a["right"]}
    for m in a["right"]:
        assert page.text_content(f'#flips b[data-flip="fixed"][data-method="{m}"]') == str(fixed[m])
        assert page.text_content(f'#flips b[data-flip="broken"][data-method="{m}"]') == str(broken[m])
    assert f"{sum(fixed.values())} fixed" in page.text_content("#flips")
    page.select_option("#f-special", "fixed:2")  # finetune_cot: wrong in A, right in B
    assert shown(page) == fixed["finetune_cot"] > 0
    page.select_option("#f-special", "broken:2")
    assert shown(page) == broken["finetune_cot"] > 0
    page.select_option("#f-col-0", "ok")
    page.click('#flips b[data-flip="fixed"][data-method="vanilla"]')  # a count in the table selects its questions
    assert shown(page) == fixed["vanilla"] > 0 and page.input_value("#f-special") == "fixed:1"
    assert page.input_value("#f-col-0") == ""  # alone: the other filters cleared
    page.focus('#flips b[data-flip="broken"][data-method="vanilla"]')
    page.keyboard.press("Enter")
    assert shown(page) == broken["vanilla"] and page.input_value("#f-special") == "broken:1"
    keep(page, tmp_path, "view_compare.png")
    assert page.evaluate("window.__pwned") is None and problems == [], problems
