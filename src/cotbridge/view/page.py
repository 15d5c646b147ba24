"""The HTML page: ``template.html`` with the style (``view.css``), the script (``view.js``), the summary rendered
here (readable with JavaScript off) and the rows as JSON in a ``<script type="application/json">`` block inlined.

Nothing is fetched: no server, no CDN; a Content-Security-Policy lets only the page's own script and style run and
no request leave. Every string from the run is escaped here (``html.escape``) or set with ``textContent`` by the
script; the JSON escapes ``<``, ``>`` and ``&`` so a ``</script>`` in a rationale cannot end the data block.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from cotbridge.fileio import write_text
from cotbridge.view.collect import Source, collect
from cotbridge.view.model import column_counts, page_data


def write_view(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Collect one input (or two, side by side), write the page and return its path. Default: ``view.html`` in the
    (first) run directory, ``view-vs-<B>.html`` there for two, ``<file>.view.html`` beside a JSONL."""
    if not 1 <= len(paths) <= 2:
        from cotbridge.errors import UserError

        raise UserError(f"give one run to view, or two to compare side by side (got {len(paths)})")
    sources = [collect(p) for p in paths]
    target = Path(out) if out else default_output(sources)
    text = render(sources)
    return write_text(target, text)


def default_output(sources: list[Source]) -> Path:
    first = Path(sources[0]["path"])
    folder = first if first.is_dir() else first.parent
    if len(sources) == 2:
        other = re.sub(r"[^A-Za-z0-9._-]+", "_", sources[1]["name"]) or "B"
        return folder / f"view-vs-{other}.html"
    return folder / "view.html" if first.is_dir() else first.with_name(first.stem + ".view.html")


def asset(name: str) -> str:
    return resources.files("cotbridge.view").joinpath(name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` left that HTML could read."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render(sources: list[Source]) -> str:
    data = page_data(sources)
    css, js = asset("view.css"), asset("view.js")
    assert "</" not in js and "</" not in css  # the inlined code itself must not close its element
    csp = (
        f"default-src 'none'; img-src data:; style-src {sha256(css)}; script-src {sha256(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    fields = {
        "TITLE": h(f"cotbridge view: {data['title']}"),
        "CSP": h(csp),
        "CSS": css,
        "JS": js,
        "SUMMARY": summary_html(sources, data),
        "DATA": script_json(data),
    }
    # One pass: a run's text that happens to contain a placeholder is never substituted again.
    return re.sub(r"@@CB_([A-Z]+)@@", lambda m: fields[m.group(1)], asset("template.html"))


# -- the summary (static HTML) ---------------------------------------------------------------------------------------
def h(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def table(head: list[str], body: list[list[Any]], cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells built here from escaped parts)."""
    cell = (lambda x: str(x)) if raw else h
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{h(x)}</th>" for x in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell(x)}</td>" for x in row) + "</tr>" for row in body]
    return "".join(out) + "</tbody></table>"


def summary_html(sources: list[Source], data: dict[str, Any]) -> str:
    parts = [f"<h1>cotbridge view: {h(data['title'])}</h1>"]
    n_eval = sum(any(o is not None for o in r["o"]) for r in data["rows"])
    n_teach = sum(bool(r.get("T")) for r in data["rows"])
    parts.append(
        f'<p class="counts">{len(data["rows"])} questions: {n_eval} evaluated'
        + (f", {n_teach} with teacher samples" if n_teach else "")
        + f" · {len(data['columns'])} outputs per question · "
        '<a href="#questions-title">the questions</a></p>'
    )
    if data["compare"]:
        parts.append(flips_html(data))
    if len(sources) == 1:
        parts.append(run_summary_html(sources[0], data, [accuracy_html(data)]))
    else:
        parts.append(accuracy_html(data))
        parts.append('<div class="runs">')
        for run, src in zip(data["runs"], sources):
            parts.append(f'<details class="run"><summary>Run {h(run["label"])}: {h(src["name"])}</summary>')
            parts.append(run_summary_html(src, data) + "</details>")
        parts.append("</div>")
    return "\n".join(parts)


def flips_html(data: dict[str, Any]) -> str:
    a, b = data["runs"]
    if not data["pairs"]:
        return '<p class="note">The two runs share no method name: nothing to compare question by question.</p>'
    body = [
        [
            h(p["method"]),
            str(p["n"]),
            f'<b data-flip="fixed" data-method="{h(p["method"])}">{p["fixed"]}</b>',
            f'<b data-flip="broken" data-method="{h(p["method"])}">{p["broken"]}</b>',
            f"{p['a_correct']} → {p['b_correct']}",
        ]
        for p in data["pairs"]
    ]
    total_fixed = sum(p["fixed"] for p in data["pairs"])
    total_broken = sum(p["broken"] for p in data["pairs"])
    return (
        f'<section id="flips"><h2>A → B: questions that flipped</h2>'
        f"<p>A = <code>{h(a['path'])}</code>, B = <code>{h(b['path'])}</code>. "
        f'<span class="fixed">{total_fixed} fixed</span> (wrong in A, right in B), '
        f'<span class="broken">{total_broken} broken</span> (right in A, wrong in B).</p>'
        + table(["method", "questions in both", "wrong → right", "right → wrong", "correct A → B"], body, "", True)
        + "</section>"
    )


def accuracy_html(data: dict[str, Any]) -> str:
    """Correct answers per output column, counted from the per-question records shown below (none: no section)."""
    if not data["columns"]:
        return ""
    counts = column_counts(data)
    body = [
        [c["label"], f"{k['correct']} / {k['n']}", f"{100 * k['correct'] / k['n']:.1f}" if k["n"] else "–"]
        for c, k in zip(data["columns"], counts)
    ]
    return (
        '<section id="accuracy"><h2>Correct answers (from the per-question records)</h2>'
        + table(["output", "correct / questions", "accuracy %"], body, "acc")
        + "</section>"
    )


def run_summary_html(src: Source, data: dict[str, Any], cards: list[str] | None = None) -> str:
    s = src["summary"]
    parts = [
        f'<p class="meta">{h(src["kind"])}'
        + (f" · recipe {h(s['recipe'])}" if s.get("recipe") else "")
        + f" · <code>{h(src['path'])}</code></p>"
    ]
    if s.get("eval"):
        ev = s["eval"]
        parts.append(f'<p class="meta">model <code>{h(ev.get("model"))}</code> · mode {h(ev.get("mode"))}</p>')
    for note in s.get("notes") or []:
        parts.append(f'<p class="note">{h(note)}</p>')
    mismatched = metric_mismatches(src, data)
    if mismatched:
        parts.append(f'<p class="note">{h(mismatched)}</p>')
    cards = list(cards or [])
    if s.get("teachers"):
        cards.append(teachers_html(s["teachers"]))
    if s.get("curation"):
        cards.append(curation_html(s["curation"]))
    if s.get("scores"):
        means = (s["scores"] or {}).get("means") or {}
        body = [[k, f"{v.get('mean'):.3f}", v.get("n")] for k, v in means.items() if isinstance(v, dict)]
        cards.append("<section><h2>Quality scores (means)</h2>" + table(["aspect", "mean", "n"], body) + "</section>")
    parts.append('<div class="cards">' + "".join(cards) + "</div>")
    if s.get("report"):
        parts.append(
            f'<details class="report" open><summary>{h(s["report"]["file"])}</summary>'
            f"{markdown_html(s['report']['markdown'], s)}</details>"
        )
    unused = [p for p in s.get("plots") or [] if not p.get("shown")]
    if unused:
        parts.append('<details open><summary>plots</summary><div class="plots">')
        parts.append("".join(plot_html(p) for p in unused) + "</div></details>")
    more = []
    if s.get("timings"):
        body = [[k, v.get("wall_s"), v.get("cpu_s")] for k, v in s["timings"].items() if isinstance(v, dict)]
        more.append("<h3>Stage times</h3>" + table(["stage", "wall s", "CPU s"], body))
    for t in s.get("teachers") or []:
        if t.get("fingerprint"):
            dump = json.dumps(t["fingerprint"], indent=2, ensure_ascii=False)
            more.append(f"<h3>Teacher fingerprint: {h(t['file'])}</h3><pre>{h(dump)}</pre>")
    if s.get("config"):
        more.append(f"<h3>config</h3><pre>{h(s['config'])}</pre>")
    if more:
        parts.append("<details><summary>config, fingerprints, stage times</summary>" + "".join(more) + "</details>")
    return "\n".join(parts)


def metric_mismatches(src: Source, data: dict[str, Any]) -> str | None:
    """Where the evaluation's own accuracy disagrees with the records shown (a folder edited by hand?)."""
    bad = []
    for method, tasks in (src["summary"].get("metrics") or {}).items():
        for task, m in tasks.items():
            if not isinstance(m, dict) or "accuracy" not in m or "n" not in m:
                continue
            recs = [
                q["outputs"][method] for q in src["questions"].values() if method in q["outputs"] and q["task"] == task
            ]
            correct = sum(o["correct"] for o in recs)
            if len(recs) != m["n"] or abs(correct - m["accuracy"] * m["n"]) > 0.5:
                bad.append(f"{method}/{task}: records {correct}/{len(recs)}, reported {m['accuracy']:.3f} of {m['n']}")
    return "The per-question records disagree with the reported metrics: " + "; ".join(bad) if bad else None


def teachers_html(teachers: list[dict[str, Any]]) -> str:
    body = []
    for t in teachers:
        s = t.get("summary") or {}
        who = s.get("teacher") or {}
        cost = s.get("cost_usd")
        body.append(
            [
                t["file"],
                " ".join(dict.fromkeys(str(x) for x in (who.get("backend"), who.get("model")) if x)),
                s.get("records", ""),
                f"{100 * s['accuracy']:.1f}" if isinstance(s.get("accuracy"), (int, float)) else "",
                f"{s.get('questions_with_a_correct_sample', '')} / {s.get('questions', '')}" if s else "",
                f"{s.get('prompt_tokens', 0):,} / {s.get('completion_tokens', 0):,}" if s else "",
                f"${cost:.4f}" if isinstance(cost, (int, float)) else "",
            ]
        )
    head = ["records file", "teacher", "samples", "correct %", "questions with a correct sample", "tokens in / out"]
    return '<section id="teacher"><h2>Teacher</h2>' + table([*head, "cost"], body) + "</section>"


def curation_html(curation: dict[str, Any]) -> str:
    body = []
    for method, st in curation.items():
        dropped = st.get("dropped") or {}
        decon = st.get("decontamination") or {}
        body.append(
            [
                method,
                Path(str(st.get("source") or "")).name or st.get("format", ""),
                st.get("records", st.get("examples", "")),
                st.get("kept", st.get("examples", "")),
                ", ".join(f"{k} {v}" for k, v in dropped.items()) or "–",
                ", ".join(st.get("filters") or []) + (" + dedupe" if st.get("dedupe") else ""),
                f"{decon.get('dropped', 0)} of {decon.get('checked', 0)}" if decon else "–",
            ]
        )
    head = ["method", "from", "records", "kept", "dropped (first failing filter)", "filters", "contaminated"]
    return '<section id="curation"><h2>Curation</h2>' + table(head, body) + "</section>"


def plot_html(p: dict[str, Any]) -> str:
    if not p.get("data"):
        return f'<p class="note">{h(p["file"])} ({p["bytes"]:,} bytes) is too large to inline.</p>'
    size = 'width="{}" height="{}" '.format(*p["size"]) if p.get("size") else ""  # no layout shift as it decodes
    image = f'<img alt="{h(p["file"])}" {size}src="data:image/png;base64,{p["data"]}">'
    return f"<figure>{image}<figcaption>{h(p['file'])}</figcaption></figure>"


IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$")


def markdown_html(md: str, summary: dict[str, Any]) -> str:
    """The little Markdown a report holds: headings, pipe tables, images (inlined from the run's plots), paragraphs
    with `code` and **bold**. Everything is escaped first."""
    plots = {p["file"]: p for p in summary.get("plots") or []}
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            rows = [r for r in block if not all(re.fullmatch(r":?-+:?", c) for c in r if c)]
            head, body = rows[0], rows[1:]
            out.append(
                '<table class="report"><thead><tr>'
                + "".join(f"<th>{inline(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
        elif IMAGE.match(line.strip()):
            figures = []
            while i < len(lines) and (not lines[i].strip() or IMAGE.match(lines[i].strip())):
                m = IMAGE.match(lines[i].strip())
                p = plots.get(m.group(2)) if m else None
                if p is not None:
                    p["shown"] = True
                    figures.append(plot_html(p))
                elif m:
                    figures.append(
                        f'<p class="note">{h(m.group(2))} ({h(m.group(1))}) is not in the run directory</p>'
                    )
                i += 1
            out.append('<div class="plots">' + "".join(figures) + "</div>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(("#", "|", "![")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def inline(text: str) -> str:
    escaped = h(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
