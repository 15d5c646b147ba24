"""`cotbridge view` at scale: a synthetic 10,000-question run (the Fine-tune-CoT layout: 4 methods evaluated on
10,000 test questions, teacher samples D=1 and D=3 for 10,000 training questions, curation with dedupe, report and
plot), its page written, then opened in headless Chromium from disk: time to the first rows, then a filter and a
search on the whole set.

Run: .venv/bin/python bench/view_scale.py   (writes bench/results/view_scale.{json,md}; needs /usr/bin/chromium)
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _paths import ROOT
from _results import write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="evaluated questions (and as many training questions)")
    ap.add_argument("--n-train", type=int, default=None, help="training questions the teacher answered (default n)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--keep", default=None, help="write the run directory here instead of a temporary folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "view_scale"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.view_runs import synthesize_run

    from cotbridge.view import write_view

    n_train = args.n if args.n_train is None else args.n_train
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "scale"
        t0 = time.perf_counter()
        made = synthesize_run(root, args.n, n_train=n_train)
        synth_s = time.perf_counter() - t0
        eval_records = len(made["right"]) * args.n
        teacher_records = sum(len(v) for v in made["teacher"].values())
        input_bytes = sum(f.stat().st_size for f in root.rglob("*.jsonl"))

        t0 = time.perf_counter()
        page = write_view([root])
        write_s = time.perf_counter() - t0
        size = page.stat().st_size
        browser = load_in_chromium(page, args.chromium)

    result = {
        "questions_evaluated": args.n,
        "questions_taught": n_train,
        "rows": args.n + n_train,
        "methods": len(made["right"]),
        "eval_records": eval_records,
        "teacher_records": teacher_records,
        "input_jsonl_mb": round(input_bytes / 1e6, 1),
        "synthesize_s": round(synth_s, 1),
        "write_page_s": round(write_s, 2),
        "page_mb": round(size / 1e6, 1),
        **browser,
        "machine": f"{platform.machine()}, {platform.python_version()}; shared 2-core CPU",
        "command": "python bench/view_scale.py" + (f" --n {args.n}" if args.n != 10_000 else ""),
    }
    write_results(args.out, result, render)


def load_in_chromium(page: Path, chromium: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        tab = b.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        tab.goto(page.resolve().as_uri(), wait_until="commit")
        tab.wait_for_selector("article.q", state="visible", timeout=120_000)
        first_rows_s = time.perf_counter() - t0
        timings = tab.evaluate("window.cbTimings")
        nav = tab.evaluate(
            "(() => { const e = performance.getEntriesByType('navigation')[0];"
            " return {dom_content_loaded_ms: e.domContentLoadedEventEnd, load_ms: e.loadEventEnd}; })()"
        )
        rendered = tab.locator("article.q").count()
        # a filter over every row: finetune_cot wrong (the change handler filters and re-renders synchronously)
        filter_ms = tab.evaluate(
            "(() => { const s = document.getElementById('f-col-2'); const t = performance.now(); s.value = 'bad';"
            " s.dispatchEvent(new Event('change')); return performance.now() - t; })()"
        )
        after_filter = tab.text_content("#count")
        # the first search builds each row's lower-cased text once; the page waits 150 ms after the last key
        tab.evaluate(
            "(() => { const s = document.getElementById('f-col-2'); s.value = '';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        t0 = time.perf_counter()
        tab.fill("#search", "test-9876")
        while not tab.text_content("#count").startswith(("1 of", "0 of")):
            time.sleep(0.01)
        search_s = time.perf_counter() - t0
        heap = tab.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        b.close()
    return {
        "first_rows_visible_s": round(first_rows_s, 2),
        "script_parse_ms": round(timings["parse_ms"]),
        "script_first_rows_ms": round(timings["first_rows_ms"]),
        "dom_content_loaded_ms": round(nav["dom_content_loaded_ms"]),
        "load_event_ms": round(nav["load_ms"]),
        "rows_rendered_at_first": rendered,
        "filter_all_rows_ms": round(filter_ms),
        "after_filter": after_filter,
        "first_search_s_incl_150ms_debounce": round(search_s, 2),
        "js_heap_mb": round(heap / 1e6) if heap else None,
        "page_errors": errors,
    }


def render(r: dict) -> str:
    return "\n".join(
        [
            f"# `cotbridge view` on a {r['questions_evaluated']:,}-question run",
            "",
            f"Synthetic Fine-tune-CoT run: {r['questions_evaluated']:,} test questions x {r['methods']} methods "
            f"({r['eval_records']:,} eval records), {r['teacher_records']:,} teacher samples over "
            f"{r['questions_taught']:,} training questions (D=1 and D=3), curation with dedupe; "
            f"{r['input_jsonl_mb']} MB of JSONL. `{r['command']}` ({r['machine']}).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| page size (one HTML file, data inlined) | {r['page_mb']} MB |",
            f"| writing the page (read the run, curation verdicts, render) | {r['write_page_s']} s |",
            f"| Chromium: file:// open to first rows visible | {r['first_rows_visible_s']} s |",
            f"| of which: DOMContentLoaded | {r['dom_content_loaded_ms']} ms |",
            f"| script: JSON.parse of the data | {r['script_parse_ms']} ms |",
            f"| script: start to first rows in the DOM | {r['script_first_rows_ms']} ms |",
            f"| rows in the DOM at first (lazy) | {r['rows_rendered_at_first']} of {r['rows']:,} |",
            f"| a filter over all rows (finetune_cot wrong: {r['after_filter']}) | {r['filter_all_rows_ms']} ms |",
            f"| first search over all text, incl. 150 ms debounce | {r['first_search_s_incl_150ms_debounce']} s |",
            f"| JS heap after the search | {r['js_heap_mb']} MB |",
            "",
        ]
    )


if __name__ == "__main__":
    main()
