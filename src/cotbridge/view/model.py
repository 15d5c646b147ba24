"""The page's data: one or two collected sources merged into columns (each run's methods) and rows (one per
question), with the flipped-question counts of a side-by-side view. Keys are short: a 10,000-question page embeds
all of it as JSON."""

from __future__ import annotations

from typing import Any

from cotbridge.view.collect import Source

RUN_LABELS = ("A", "B")


def page_data(sources: list[Source]) -> dict[str, Any]:
    """``{"title", "compare", "runs", "columns", "pairs", "verdicts", "rows"}``; ``pairs`` (two runs only) holds
    per shared method the questions it got wrong in A and right in B (``fixed``) and the reverse (``broken``)."""
    if not 1 <= len(sources) <= 2:
        raise ValueError("one source, or two side by side")
    compare = len(sources) == 2
    columns = []
    for i, src in enumerate(sources):
        for m in src["methods"]:
            columns.append({"run": i, "method": m, "label": f"{RUN_LABELS[i]} · {m}" if compare else m})
    pairs = pair_columns(columns) if compare else []
    if pairs:  # each pair's A and B side by side, then the methods only one run has
        paired = [c for p in pairs for c in (p["a"], p["b"])]
        order = paired + [i for i in range(len(columns)) if i not in paired]
        columns = [columns[i] for i in order]
        for p in pairs:
            p["a"], p["b"] = order.index(p["a"]), order.index(p["b"])
    rows = [build_row(key, sources, columns) for key in question_keys(sources)]
    prompt_templates(rows, columns)
    for p in pairs:
        both = [r for r in rows if r["o"][p["a"]] is not None and r["o"][p["b"]] is not None]
        p["n"] = len(both)
        p["fixed"] = sum(not r["o"][p["a"]]["c"] and r["o"][p["b"]]["c"] for r in both)
        p["broken"] = sum(r["o"][p["a"]]["c"] and not r["o"][p["b"]]["c"] for r in both)
        p["a_correct"] = sum(r["o"][p["a"]]["c"] for r in both)
        p["b_correct"] = sum(r["o"][p["b"]]["c"] for r in both)
    verdicts = sorted({v for r in rows for t in r.get("T", []) for v in (t.get("v") or {}).values()})
    names = [s["name"] for s in sources]
    return {
        "title": " vs ".join(names),
        "compare": compare,
        "runs": [{"label": RUN_LABELS[i], "name": s["name"], "path": s["path"]} for i, s in enumerate(sources)],
        "columns": columns,
        "pairs": pairs,
        "verdicts": verdicts,
        "rows": rows,
    }


def pair_columns(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The methods both runs have, by name; two runs of one method each (two eval folders) pair whatever their
    names."""
    a = {c["method"]: i for i, c in enumerate(columns) if c["run"] == 0}
    b = {c["method"]: i for i, c in enumerate(columns) if c["run"] == 1}
    shared = [m for m in a if m in b]
    if shared:
        return [{"method": m, "a": a[m], "b": b[m]} for m in shared]
    if len(a) == 1 and len(b) == 1:
        (ma, ia), (mb, ib) = next(iter(a.items())), next(iter(b.items()))
        return [{"method": ma if ma == mb else f"{ma} / {mb}", "a": ia, "b": ib}]
    return []


def question_keys(sources: list[Source]) -> list[str]:
    """Evaluated questions first (in file order), then those only a teacher answered; each key once."""
    seen: dict[str, bool] = {}
    for src in sources:
        for key, q in src["questions"].items():
            seen[key] = seen.get(key, False) or bool(q["outputs"])
    evaluated = [k for k, e in seen.items() if e]
    return evaluated + [k for k, e in seen.items() if not e]


def build_row(key: str, sources: list[Source], columns: list[dict[str, Any]]) -> dict[str, Any]:
    found = [(i, s["questions"][key]) for i, s in enumerate(sources) if key in s["questions"]]
    base = found[0][1]
    row: dict[str, Any] = {
        "k": key,
        "t": base["task"],
        "s": base["split"],
        "id": base["id"],
        "q": base["question"],
        "g": base["gold"],
    }
    teacher = []
    for i, q in found:
        for t in q["teacher"]:
            label = f"{RUN_LABELS[i]} · {t['source']}" if len(sources) == 2 else t["source"]
            teacher.append(compact_teacher(t, label))
    if teacher:
        row["T"] = teacher
    by_run = dict(found)
    row["o"] = [
        compact_output(by_run[c["run"]]["outputs"][c["method"]])
        if c["run"] in by_run and c["method"] in by_run[c["run"]]["outputs"]
        else None
        for c in columns
    ]
    return row


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, {}, "")}


def compact_teacher(t: dict[str, Any], label: str) -> dict[str, Any]:
    return _drop_empty(
        {
            "src": label,
            "n": t.get("sample"),
            "r": t.get("rationale"),
            "th": t.get("thinking"),
            "a": t.get("answer_output"),
            "p": t.get("prediction"),
            "c": t.get("correct"),
            "f": t.get("finish_reason"),
            "v": t.get("verdicts"),
            "sc": t.get("scores"),
        }
    )


def compact_output(o: dict[str, Any]) -> dict[str, Any]:
    samples = [
        _drop_empty(
            {
                "o": s.get("output"),
                "th": s.get("thinking"),
                "a": s.get("answer_output"),
                "p": s.get("prediction"),
                "c": bool(s.get("correct")),
                "f": s.get("finish_reason"),
                "sc": s.get("scores"),
            }
        )
        for s in o.get("samples") or []
    ]
    out = {"p": o.get("prediction"), "c": bool(o.get("correct")), "S": samples}
    if o.get("prompt"):
        out["pr"] = o["prompt"]  # made a template reference by prompt_templates
    for k in ("em", "f1"):
        if o.get(k) is not None:
            out[k] = round(float(o[k]), 4)
    if o.get("scores"):
        out["sc"] = o["scores"]
    return out


def prompt_templates(rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> None:
    """Each output's prompt as its column's template (the text before and after the question, which most questions
    of a column share: an 8-shot prefix is embedded once, not once per question) and the question, ``"pt"``: the
    template's index in the column's ``prompts``; a prompt without its question's text in it stays whole (``"pr"``)."""
    for i, column in enumerate(columns):
        index: dict[tuple[str, str], int] = {}
        for r in rows:
            o = r["o"][i]
            if o is None or "pr" not in o:
                continue
            text, question = o["pr"], r["q"] or ""
            at = text.rfind(question) if question else -1  # the question asked comes last (after any exemplars)
            if at >= 0:
                del o["pr"]
                o["pt"] = index.setdefault((text[:at], text[at + len(question) :]), len(index))
        column["prompts"] = [list(k) for k in index]


def column_counts(data: dict[str, Any]) -> list[dict[str, int]]:
    """Per column: questions with an output, and how many of those are correct."""
    return [
        {
            "n": sum(r["o"][i] is not None for r in data["rows"]),
            "correct": sum(bool(r["o"][i] and r["o"][i]["c"]) for r in data["rows"]),
        }
        for i in range(len(data["columns"]))
    ]
