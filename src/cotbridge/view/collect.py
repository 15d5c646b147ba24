"""Read what a command left on disk into one plain dict: the summary (config, teacher cost, curation, report, plots)
and one entry per question (the question, its gold answer, every teacher sample with its curation verdict, each
method's output with its extracted answer and correctness).

Inputs: a run directory of any recipe (``config.yaml``, ``teacher/*.jsonl``, ``data/<method>/curation.json``,
``eval/<method>/<task>.jsonl``, ``report.md`` or ``matrix.md``), a ``cotbridge eval`` output folder
(``results.json`` beside ``<task>.jsonl``), a ``cotbridge score`` output (scored JSONL) or a teacher-records JSONL
(``cotbridge teach`` / ``cotbridge traces``). Bad input raises :class:`~cotbridge.errors.UserError` /
:class:`~cotbridge.errors.DataError` naming the file (and line).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cotbridge.answers.thinking import split_thinking
from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import read_json, read_jsonl

Source = dict[str, Any]
MAX_PLOT_BYTES = 2_000_000  # a bigger image is named in the summary, not inlined
REPORT_FILES = ("report.md", "matrix.md")


def collect(path: str | Path) -> Source:
    """The plain dict of one input: ``{"path", "kind", "name", "summary", "methods", "questions"}``.

    ``questions`` maps ``task:split:id`` to ``{"task", "split", "id", "question", "gold", "teacher": [...],
    "outputs": {method: {...}}}``; ``kind`` is ``run``, ``eval``, ``teacher`` or ``scores``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file or directory (give a run directory, an eval output folder or a JSONL)")
    if p.is_file():
        if p.name == "results.json":
            return collect_eval_folder(p.parent)
        return collect_file(p)
    if (p / "results.json").is_file() and not (p / "eval").is_dir():
        return collect_eval_folder(p)
    if any((p / marker).exists() for marker in ("config.yaml", "eval", "teacher")):
        return collect_run(p)
    raise UserError(
        f"{p}: not a run directory (no config.yaml, eval/ or teacher/) nor an eval output folder (no results.json)"
    )


def new_source(path: Path, kind: str) -> Source:
    return {
        "path": str(path),
        "kind": kind,
        "name": path.name if path.name else str(path),
        "summary": {"notes": []},
        "methods": [],
        "questions": {},
    }


# -- run directories -------------------------------------------------------------------------------------------------
def collect_run(root: Path) -> Source:
    src = new_source(root, "run")
    summary = src["summary"]
    config = root / "config.yaml"
    if config.is_file():
        summary["config"] = config.read_text(encoding="utf-8", errors="replace")
        summary["recipe"] = recipe_of(summary["config"])
    default_split = eval_split_of(summary.get("config"))
    timings = root / "timings.json"
    if timings.is_file():
        summary["timings"] = read_json(timings)
    test_sets = read_json(root / "eval" / "test_sets.json") if (root / "eval" / "test_sets.json").is_file() else {}

    teacher_files = sorted((root / "teacher").glob("*.jsonl")) if (root / "teacher").is_dir() else []
    teacher_records = {f.name: list(read_jsonl(f)) for f in teacher_files if ".replaced-" not in f.name}
    summary["teachers"] = [teacher_summary(f) for f in teacher_files if f.name in teacher_records]
    verdicts = curation_verdicts(root, teacher_records, summary)
    for name, records in teacher_records.items():
        add_teacher_records(src, teacher_label(name), records, verdicts.get(name, {}), root / "teacher" / name)

    method_dirs = sorted(d for d in (root / "eval").glob("*") if d.is_dir()) if (root / "eval").is_dir() else []
    order = method_order(summary.get("config"), [d.name for d in method_dirs])
    metrics: dict[str, dict[str, Any]] = {}
    for d in sorted(method_dirs, key=lambda d: order.index(d.name)):
        files = eval_files(d)
        if not files:
            continue
        results = read_json(d / "results.json") if (d / "results.json").is_file() else {}
        for f in files:
            task = f.stem
            split = (
                (results.get("tasks") or {}).get(task, {}).get("split")
                or (test_sets.get(task) or {}).get("split")
                or default_split
            )
            add_eval_records(src, d.name, task, split, f)
            metrics.setdefault(d.name, {})[task] = metrics_of(d, task, results)
        src["methods"].append(d.name)
    summary["metrics"] = metrics
    if not src["methods"]:
        if not any(teacher_records.values()):
            raise UserError(no_eval_message(root))
        # a run still training (or stopped before eval): its teacher samples and curation are worth reading now
        summary["notes"].append(
            "No evaluation results yet (no eval/<method>/<task>.jsonl): the teacher's samples and the curation "
            "only. Write the page again once the run has evaluated (cotbridge view RUN_DIR)."
        )
    add_scores(src, root)
    for name in REPORT_FILES:
        if (root / name).is_file():
            summary["report"] = {"file": name, "markdown": (root / name).read_text(encoding="utf-8")}
            break
    summary["plots"] = plots_of(root)
    return src


def no_eval_message(root: Path) -> str:
    return (
        f"{root}: no eval results (no eval/<method>/<task>.jsonl) and no teacher records (teacher/*.jsonl): "
        "finish the run by rerunning its command"
    )


def recipe_of(config_text: str) -> str | None:
    import yaml

    try:
        cfg = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        return None
    if not isinstance(cfg, dict):
        return None
    if "teachers" in cfg:
        return "instruct"
    if "large" in cfg or "writer" in cfg:
        return "lm_guided"
    if "methods" in cfg:
        return "finetune_cot"
    return None


def eval_split_of(config_text: str | None) -> str:
    import yaml

    try:
        cfg = yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        return "test"
    ev = cfg.get("eval") if isinstance(cfg, dict) else None
    return str(ev.get("split") or "test") if isinstance(ev, dict) else "test"


def method_order(config_text: str | None, found: list[str]) -> list[str]:
    """The config's method order (``methods`` / ``eval.rows``), then any other folder by name."""
    import yaml

    try:
        cfg = yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        cfg = {}
    named: list[str] = []
    if isinstance(cfg, dict):
        ev = cfg.get("eval") if isinstance(cfg.get("eval"), dict) else {}
        for item in (cfg.get("methods") or []) + (ev.get("rows") or []):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                named.append(item["name"])
    return [n for n in named if n in found] + sorted(n for n in found if n not in named)


def eval_files(d: Path) -> list[Path]:
    """The per-question JSONL files of one evaluated method (``<task>.jsonl``)."""
    return sorted(f for f in d.glob("*.jsonl") if not f.name.endswith(".tmp"))


def metrics_of(d: Path, task: str, results: dict[str, Any]) -> dict[str, Any]:
    """What the evaluation itself reported for (method, task): results.json (run, eval), <task>.metrics.json
    (lm_guided) or <task>.json (instruct)."""
    if task in (results.get("results") or {}):
        return results["results"][task]
    if (d / f"{task}.metrics.json").is_file():
        return read_json(d / f"{task}.metrics.json")
    cell = d / f"{task}.json"
    if cell.is_file():
        data = read_json(cell)
        return data.get("metrics", {}) if isinstance(data, dict) else {}
    return {}


def teacher_label(file_name: str) -> str:
    """What a sample's source is called in the page: ``D3`` for ``<task>.D3.jsonl``, else the file's stem."""
    stem = Path(file_name).stem
    return stem.split(".", 1)[1] if "." in stem else stem


def teacher_summary(f: Path) -> dict[str, Any]:
    """One teacher file's line of the summary: counts, tokens and cost (``<stem>.summary.json``), fingerprint."""
    out: dict[str, Any] = {"file": f.name}
    s = f.with_name(f.stem + ".summary.json")
    if s.is_file():
        out["summary"] = read_json(s)
    fp = f.with_name(f.stem + ".fingerprint.json")
    if fp.is_file():
        out["fingerprint"] = read_json(fp)
    return out


# -- curation verdicts -----------------------------------------------------------------------------------------------
def curation_verdicts(
    root: Path, teacher_records: dict[str, list[dict[str, Any]]], summary: dict[str, Any]
) -> dict[str, dict[str, dict[tuple[str, int], str]]]:
    """{teacher file name: {method: {(example_id, sample): "kept" or the reason it was dropped}}}.

    curation.json keeps counts, not per-record verdicts: each record's verdict is recomputed with the filters it
    records (each record alone gives its first failing filter; a record that passes alone but is missing from the
    whole set's kept records was a duplicate), and decontamination.json names the records dropped as contaminated.
    A count that disagrees with curation.json's is said in the summary."""
    out: dict[str, dict[str, dict[tuple[str, int], str]]] = {}
    curation: dict[str, Any] = {}
    data = root / "data"
    for stats_file in sorted(data.glob("*/curation.json")) + sorted(data.glob("curation.json")):
        stats = read_json(stats_file)
        method = stats_file.parent.name if stats_file.parent != data else "data"
        if not isinstance(stats, dict):
            continue
        if stats and all(isinstance(v, dict) and "filters" in v for v in stats.values()):  # lm_guided: per task
            curation.update({f"{method}/{task}": v for task, v in stats.items()})
            continue
        curation[method] = stats
        source = Path(str(stats.get("source") or ""))
        if source.name not in teacher_records or "filters" not in stats:
            continue
        records = teacher_records[source.name]
        verdicts = verdicts_for(records, stats)
        contaminated = stats_file.parent / "decontamination.json"
        if contaminated.is_file():
            for d in read_json(contaminated).get("dropped") or []:
                rec = d.get("record", d) if isinstance(d, dict) else {}
                key = (str(rec.get("example_id")), rec.get("sample"))
                if key in verdicts:
                    verdicts[key] = "contaminated"
        kept = sum(v == "kept" for v in verdicts.values())
        if "kept" in stats and kept != stats["kept"]:
            summary["notes"].append(
                f"{method}: the recorded filters keep {kept} of {len(records)} records on recomputation, "
                f"curation.json says {stats['kept']} (curated with other settings?); verdicts shown are recomputed"
            )
        out.setdefault(source.name, {})[method] = verdicts
    summary["curation"] = curation
    return out


def verdicts_for(records: list[dict[str, Any]], stats: dict[str, Any]) -> dict[tuple[str, int], str]:
    from cotbridge.curate import CurateSettings, curate

    base = CurateSettings(filters=list(stats["filters"]), dedupe=False, rationale=stats.get("rationale") or "final")
    verdicts: dict[tuple[str, int], str] = {}
    try:
        for r in records:
            kept, st = curate([r], base)
            verdicts[(str(r["example_id"]), r["sample"])] = "kept" if kept else next(iter(st["dropped"]), "dropped")
        if stats.get("dedupe"):
            kept, _ = curate(records, dataclasses.replace(base, dedupe=True))
            survivors = {(str(r["example_id"]), r["sample"]) for r in kept}
            for key, v in verdicts.items():
                if v == "kept" and key not in survivors:
                    verdicts[key] = "duplicate"
    except (KeyError, UserError):  # an unknown filter (a newer cotbridge) or a record without its keys
        return {}
    return verdicts


# -- questions -------------------------------------------------------------------------------------------------------
def question_entry(src: Source, task: str, split: str, qid: str, question: Any, gold: Any) -> dict[str, Any]:
    key = f"{task}:{split}:{qid}"
    q = src["questions"].get(key)
    if q is None:
        q = src["questions"][key] = {
            "task": task,
            "split": split,
            "id": qid,
            "question": "" if question is None else str(question),
            "gold": "" if gold is None else str(gold),
            "teacher": [],
            "outputs": {},
        }
    return q


def records_with_lines(path: Path, need: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's records (a corrupt line is a DataError naming it), each checked for the fields ``need``."""
    line = 0
    for line, rec in numbered(path):
        missing = [k for k in need if k not in rec]
        if missing:
            raise DataError(path, f"record has no {missing[0]!r} field (not {what}?)", line)
        yield line, rec


def numbered(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records with their line numbers (blank lines skipped, as read_jsonl does)."""
    import json

    with path.open("rb") as f:
        lines = [(n, raw) for n, raw in enumerate(f, 1) if raw.strip()]
    for n, raw in lines:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(path, "not UTF-8 text", n) from None
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg} at column {e.colno})", n) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", n)
        yield n, obj


def prompt_text(prompt: Any) -> str:
    """A record's prompt as the page shows it: the text, or chat messages one after another under their roles."""
    if isinstance(prompt, list):
        return "\n\n".join(
            f"[{m.get('role', '?')}]\n{m.get('content', '')}" if isinstance(m, dict) else str(m) for m in prompt
        )
    return str(prompt)


def add_eval_records(src: Source, method: str, task: str, split: str, path: Path) -> None:
    for _line, rec in records_with_lines(path, ("id", "samples", "correct"), "an eval record"):
        q = question_entry(src, task, split, str(rec["id"]), rec.get("question"), rec.get("gold"))
        q["outputs"][method] = eval_output(rec)


def eval_output(rec: dict[str, Any]) -> dict[str, Any]:
    samples = []
    raw = rec.get("samples") or []
    for s in raw:
        # `cotbridge eval --predictions` keeps the one scored text beside its verdict, on the record
        text = str(s.get("output", rec.get("output") if len(raw) == 1 else "") or "")
        trace = split_thinking(text)
        samples.append(
            {
                "output": trace.response if trace.thinking is not None else text,
                "thinking": trace.thinking,
                "answer_output": s.get("answer_output"),
                "prediction": s.get("prediction"),
                "correct": bool(s.get("correct")),
                "finish_reason": s.get("finish_reason"),
            }
        )
    out = {"prediction": rec.get("prediction"), "correct": bool(rec.get("correct")), "samples": samples}
    if rec.get("prompt"):
        out["prompt"] = prompt_text(rec["prompt"])
    for k in ("em", "f1"):
        if rec.get(k) is not None:
            out[k] = rec[k]
    return out


def add_teacher_records(
    src: Source, label: str, records: list[dict[str, Any]], verdicts: dict[str, dict[Any, str]], path: Path
) -> None:
    for rec in records:
        for k in ("example_id", "sample"):
            if k not in rec:
                raise DataError(path, f"record {rec.get('key', '?')} has no {k!r} field (not a teacher record?)")
        q = question_entry(
            src,
            str(rec.get("task") or "?"),
            str(rec.get("split") or "train"),
            str(rec["example_id"]),
            rec.get("question"),
            rec.get("gold"),
        )
        key = (str(rec["example_id"]), rec["sample"])
        q["teacher"].append(teacher_sample(rec, label, {m: v[key] for m, v in verdicts.items() if key in v}))


def teacher_sample(rec: dict[str, Any], label: str, verdicts: dict[str, str]) -> dict[str, Any]:
    finish = rec.get("finish_reason")
    out = {
        "source": label,
        "sample": rec.get("sample"),
        "rationale": str(rec.get("rationale") or ""),
        "thinking": rec.get("thinking"),
        "answer_output": rec.get("answer_output"),
        "prediction": rec.get("prediction"),
        "correct": rec.get("correct"),
        "finish_reason": finish.get("rationale") if isinstance(finish, dict) else finish,
        "verdicts": verdicts,
    }
    if rec.get("scores"):
        out["scores"] = flat_scores(rec["scores"])
    return out


def flat_scores(scores: Any) -> dict[str, float | None]:
    """``{scorer: {aspect: {score, raw}}}`` -> ``{"scorer/aspect": score}``."""
    out: dict[str, float | None] = {}
    if isinstance(scores, dict):
        for scorer, aspects in scores.items():
            for aspect, cell in (aspects or {}).items() if isinstance(aspects, dict) else []:
                out[f"{scorer}/{aspect}"] = cell.get("score") if isinstance(cell, dict) else cell
    return out


def add_scores(src: Source, root: Path) -> None:
    """LM-guided runs score each row's rationales (``scores/<task>.jsonl``, keys ``row/id#sample``): the scores go
    on the outputs they belong to."""
    by_id = {(q["task"], q["id"]): q for q in src["questions"].values() if q["outputs"]}
    for f in sorted((root / "scores").glob("*.jsonl")) if (root / "scores").is_dir() else []:
        for _line, rec in numbered(f):
            q = by_id.get((f.stem, str(rec.get("example_id"))))
            row, j = rec.get("row"), rec.get("sample")
            if q is not None and row in q["outputs"]:
                samples = q["outputs"][row]["samples"]
                if isinstance(j, int) and 0 <= j < len(samples):
                    samples[j]["scores"] = flat_scores(rec.get("scores"))


def plots_of(root: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((root / "plots").glob("*.png")) + sorted(root.glob("*.png")):
        size = f.stat().st_size
        entry: dict[str, Any] = {"file": str(f.relative_to(root)), "bytes": size}
        if size <= MAX_PLOT_BYTES:
            raw = f.read_bytes()
            entry["data"] = base64.b64encode(raw).decode("ascii")
            if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR":  # its size, so the page reserves the box
                entry["size"] = [int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")]
        out.append(entry)
    return out


# -- eval folders and single files -----------------------------------------------------------------------------------
def collect_eval_folder(d: Path) -> Source:
    src = new_source(d, "eval")
    results = read_json(d / "results.json")
    if not isinstance(results, dict):
        raise DataError(d / "results.json", "expected a JSON object (a cotbridge eval results.json)")
    files = eval_files(d)
    if not files:
        raise UserError(f"{d}: results.json but no per-question <task>.jsonl beside it")
    label = d.name
    summary = src["summary"]
    summary["eval"] = {k: results.get(k) for k in ("model", "mode", "versions")}
    if isinstance(results.get("config"), dict):
        import yaml

        summary["config"] = yaml.safe_dump(results["config"], sort_keys=False, allow_unicode=True)
    split_default = str((results.get("config") or {}).get("split") or "test")
    metrics = {}
    for f in files:
        split = (results.get("tasks") or {}).get(f.stem, {}).get("split") or split_default
        add_eval_records(src, label, f.stem, split, f)
        metrics[f.stem] = metrics_of(d, f.stem, results)
    src["methods"] = [label]
    summary["metrics"] = {label: metrics}
    if (d / "results.md").is_file():
        summary["report"] = {"file": "results.md", "markdown": (d / "results.md").read_text(encoding="utf-8")}
    return src


def collect_file(f: Path) -> Source:
    if f.suffix != ".jsonl":
        raise UserError(f"{f}: not a JSONL of records nor a folder (give a run directory, an eval folder or a JSONL)")
    first = next(numbered(f), None)
    if first is None:
        raise DataError(f, "empty file: no records to show")
    rec = first[1]
    if "samples" in rec and "correct" in rec and "scores" not in rec:
        src = new_source(f, "eval")
        add_eval_records(src, f.stem, f.stem, "test", f)
        src["methods"] = [f.stem]
        return src
    if "example_id" in rec and "sample" in rec:
        src = new_source(f, "teacher" if "scores" not in rec else "scores")
        recs = [r for _n, r in records_with_lines(f, ("example_id", "sample"), "a teacher record")]
        add_teacher_records(src, teacher_label(f.name), recs, {}, f)
        src["summary"]["teachers"] = [teacher_summary(f)]
        return src
    if "scores" in rec:
        return collect_scored(f)
    raise DataError(f, "not cotbridge records (expected teacher records, eval records or scored items)", first[0])


def collect_scored(f: Path) -> Source:
    """A ``cotbridge score`` output: each item's rationale with its aspect scores (and the means beside it)."""
    src = new_source(f, "scores")
    means = f.with_suffix(".summary.json")
    if means.is_file():
        src["summary"]["scores"] = read_json(means)
    for line, rec in numbered(f):
        if "samples" in rec:  # scored eval records: the scores belong to the output
            q = question_entry(src, f.stem, "test", str(rec.get("id", line)), rec.get("question"), rec.get("gold"))
            q["outputs"][f.stem] = {**eval_output(rec), "scores": flat_scores(rec.get("scores"))}
            if f.stem not in src["methods"]:
                src["methods"].append(f.stem)
            continue
        qid = str(rec.get("example_id", rec.get("id", rec.get("key", line))))
        task = str(rec.get("task") or rec.get("row") or f.stem)
        q = question_entry(src, task, str(rec.get("split") or "-"), qid, rec.get("question"), rec.get("gold"))
        sample = teacher_sample(rec, str(rec.get("row") or "scored"), {})
        sample["rationale"] = str(rec.get("rationale") or "")
        q["teacher"].append(sample)
    return src
