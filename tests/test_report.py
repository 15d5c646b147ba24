"""Result rows, Markdown/LaTeX method tables, plots and write_report."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from cotbridge.reporting.plots import plot_accuracy_by_method, plot_accuracy_vs_degree, plot_accuracy_vs_student_size
from cotbridge.reporting.report import write_report
from cotbridge.reporting.rows import format_params, load_rows, row_labels, rows_from_results
from cotbridge.reporting.tables import latex_escape, markdown_table, method_table_latex, method_table_markdown


def summary(**tasks) -> dict:
    """A results.json summary; each task is (accuracy, stderr, n) or a full metrics dict."""
    results = {
        t: v if isinstance(v, dict) else {"n": v[2], "accuracy": v[0], "accuracy_stderr": v[1]}
        for t, v in tasks.items()
    }
    return {"model": "m", "mode": "zero_shot_cot", "results": results, "tasks": {}, "config": {}}


@pytest.fixture
def rows():
    rs = rows_from_results(summary(gsm8k=(0.62, 0.021, 150), svamp=(0.40, 0.03, 300)), "zero_shot_cot")
    rs += rows_from_results(summary(gsm8k=(0.70, 0.02, 150)), "fine_tune_cot", degree=4)
    return rs


def sweep_rows():
    rs = rows_from_results(summary(multiarith=(0.06, 0.017, 200)), "zero_shot_cot")
    for d, a in [(1, 0.2), (2, 0.27), (4, 0.31), (8, 0.36)]:
        rs += rows_from_results(summary(multiarith=(a, 0.03, 200), svamp=(a / 2, 0.02, 300)), f"ft_cot_d{d}", degree=d)
    return rs


def size_rows():
    rs = []
    for student, p, a in [
        ("SmolLM2-135M", 135_000_000, 0.2),
        ("SmolLM2-360M", 360_000_000, 0.3),
        ("SmolLM2-1.7B", 1_700_000_000, 0.45),
    ]:
        for method, bonus in [("vanilla", 0.0), ("fine_tune_cot", 0.1)]:
            rs += rows_from_results(summary(gsm8k=(a + bonus, 0.03, 150)), method, student=student, student_params=p)
    return rs


# ---------------------------------------------------------------- rows


def test_rows_from_results_fields():
    m = {
        "n": 10,
        "accuracy": 0.5,
        "accuracy_stderr": 0.16,
        "em": 0.4,
        "em_stderr": 0.1,
        "f1": 0.55,
        "f1_stderr": 0.12,
        "maj@4": 0.5,
        "correct_format": 1.0,
    }
    (row,) = rows_from_results(summary(hotpotqa=m), "cot", degree=8, student="s", student_params=135_000_000)
    assert row == {
        "method": "cot",
        "task": "hotpotqa",
        "n": 10,
        "accuracy": 0.5,
        "stderr": 0.16,
        "em": 0.4,
        "em_stderr": 0.1,
        "f1": 0.55,
        "f1_stderr": 0.12,
        "degree": 8,
        "student": "s",
        "student_params": 135_000_000,
    }


def test_rows_from_results_nan_and_bad_input():
    (row,) = rows_from_results(summary(t=(math.nan, math.nan, 0)), "m")
    assert row["accuracy"] is None and row["stderr"] is None
    with pytest.raises(TypeError, match="degre"):
        rows_from_results(summary(t=(0.5, 0.1, 4)), "m", degre=4)
    with pytest.raises(ValueError, match="results"):
        rows_from_results({"model": "m"}, "m")


def test_markdown_table_of_results_unchanged():
    m = {"n": 3, "accuracy": 2 / 3, "accuracy_stderr": 0.333, "correct_format": 1.0, "complete": 1.0, "invalid": 0.0}
    text = markdown_table({"gsm8k": m}, title="x")
    assert text.splitlines()[0] == "### x"
    assert "| gsm8k | 3 | 66.7 ± 33.3 | – | – | 100.0 | 100.0 | 0.0 |" in text


# ---------------------------------------------------------------- tables


def test_method_table_markdown(rows):
    text = method_table_markdown(rows)
    lines = text.splitlines()
    assert lines[0] == "| method | gsm8k (n=150) | svamp (n=300) |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| zero_shot_cot | 62.0 ± 2.1 | 40.0 ± 3.0 |"
    assert lines[3] == "| fine_tune_cot | 70.0 ± 2.0 | – |"  # missing cell
    assert len(lines) == 4


def test_method_table_differing_n_goes_in_cells():
    rs = rows_from_results(summary(gsm8k=(0.5, 0.05, 100)), "a") + rows_from_results(
        summary(gsm8k=(0.6, 0.04, 150)), "b"
    )
    text = method_table_markdown(rs)
    assert "| method | gsm8k |" in text
    assert "| a | 50.0 ± 5.0 (n=100) |" in text and "| b | 60.0 ± 4.0 (n=150) |" in text


def test_method_table_other_metric_and_missing_metric(rows):
    rs = rows_from_results(
        summary(
            squad={
                "n": 20,
                "accuracy": 0.5,
                "accuracy_stderr": 0.1,
                "em": 0.45,
                "em_stderr": 0.11,
                "f1": 0.6,
                "f1_stderr": 0.09,
            }
        ),
        "cot",
    )
    assert "| cot | 60.0 ± 9.0 |" in method_table_markdown(rs, metric="f1")
    with pytest.raises(ValueError, match="'em'"):
        method_table_markdown(rows, metric="em")
    with pytest.raises(ValueError, match="no result rows"):
        method_table_markdown([])


def test_same_method_several_degrees_gets_labels():
    rs = sweep_rows() + rows_from_results(summary(multiarith=(0.4, 0.03, 200)), "ft_cot_d8", degree=16)
    labels = row_labels(rs)
    assert "ft_cot_d8 (D=8)" in labels and "ft_cot_d8 (D=16)" in labels
    assert "| ft_cot_d8 (D=8) | 36.0 ± 3.0 | 18.0 ± 2.0 |" in method_table_markdown(rs)
    with pytest.raises(ValueError, match="duplicate"):
        row_labels(rs + rows_from_results(summary(multiarith=(0.4, 0.03, 200)), "ft_cot_d8", degree=16))


def test_method_table_latex(rows):
    rs = rows + rows_from_results(summary(svamp=(0.45, 0.02, 300)), "vanilla_ft")
    tex = method_table_latex(rs)
    assert r"\begin{tabular}{lcc}" in tex and r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"Method & gsm8k ($n$=150) & svamp ($n$=300) \\" in tex
    assert r"zero\_shot\_cot & 62.0 $\pm$ 2.1 & 40.0 $\pm$ 3.0 \\" in tex
    assert r"fine\_tune\_cot & \textbf{70.0 $\pm$ 2.0} & -- \\" in tex  # best gsm8k; missing svamp
    assert r"vanilla\_ft & -- & \textbf{45.0 $\pm$ 2.0} \\" in tex
    assert tex.count(r"\textbf") == 2
    assert latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


def test_latex_single_entry_column_not_bold():
    tex = method_table_latex(rows_from_results(summary(t=(0.5, 0.1, 10)), "only"))
    assert r"\textbf" not in tex


def test_format_params():
    assert [format_params(p) for p in (135_000_000, 1_700_000_000, 7_240_000_000, 5_000)] == [
        "135M",
        "1.7B",
        "7.24B",
        "5K",
    ]


# ---------------------------------------------------------------- plots


def check_png(path, size=None):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        if size:
            assert im.size == size
        im.load()
        lo, hi = im.convert("L").getextrema()
        assert lo < hi  # not a blank canvas


def test_plot_accuracy_by_method(tmp_path, rows):
    out = plot_accuracy_by_method(rows, tmp_path / "sub" / "bars.png", figsize=(6, 4), dpi=100)
    assert out == tmp_path / "sub" / "bars.png"
    check_png(out, (600, 400))
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (400, 600)
    check_png(plot_accuracy_by_method(rows, tmp_path / "one.png", task="svamp", figsize=(5, 4), dpi=50), (250, 200))


def test_plot_accuracy_by_method_default_size(tmp_path, rows):
    check_png(plot_accuracy_by_method(rows, tmp_path / "bars.png"))


def test_plot_accuracy_vs_degree(tmp_path):
    check_png(plot_accuracy_vs_degree(sweep_rows(), tmp_path / "d.png", figsize=(6, 4), dpi=80), (480, 320))
    check_png(plot_accuracy_vs_degree(sweep_rows(), tmp_path / "d2.png"))


def test_plot_accuracy_vs_student_size(tmp_path):
    check_png(plot_accuracy_vs_student_size(size_rows(), tmp_path / "s.png", figsize=(6, 4), dpi=80), (480, 320))
    two_tasks = size_rows() + rows_from_results(summary(svamp=(0.3, 0.02, 300)), "vanilla", student_params=10**9)
    check_png(plot_accuracy_vs_student_size(two_tasks, tmp_path / "s2.png"))


def test_plot_errors(tmp_path, rows):
    with pytest.raises(ValueError, match="degree"):
        plot_accuracy_vs_degree(rows_from_results(summary(t=(0.5, 0.1, 4)), "m"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="student_params"):
        plot_accuracy_vs_student_size(rows, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'nope'"):
        plot_accuracy_by_method(rows, tmp_path / "x.png", task="nope")
    with pytest.raises(ValueError, match="no result rows"):
        plot_accuracy_by_method([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="accuracy"):
        plot_accuracy_by_method(rows_from_results(summary(t=(math.nan, math.nan, 0)), "m"), tmp_path / "x.png")
    with pytest.raises(ValueError, match=">= 1"):
        plot_accuracy_vs_degree(rows_from_results(summary(t=(0.5, 0.1, 4)), "m", degree=0), tmp_path / "x.png")
    same_d = rows_from_results(summary(t=(0.5, 0.1, 4)), "a", degree=2) * 2
    with pytest.raises(ValueError, match="duplicate|two result rows"):
        plot_accuracy_vs_degree(same_d, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- write_report


def test_write_report_by_method_only(tmp_path, rows):
    paths = write_report(rows, tmp_path / "run", "My run", notes="Student `x`, 3 epochs.")
    assert set(paths) == {"report.md", "report.tex", "results_table.json", "plots/accuracy_by_method.png"}
    md = paths["report.md"].read_text(encoding="utf-8")
    assert md.startswith("# My run\n")
    assert method_table_markdown(rows) in md
    assert "Student `x`, 3 epochs." in md
    assert "![Accuracy by method](plots/accuracy_by_method.png)" in md
    assert md.index("| zero_shot_cot |") < md.index("Student `x`") < md.index("![")
    assert paths["report.tex"].read_text(encoding="utf-8").count(r"\begin{tabular}") == 1
    assert load_rows(paths["results_table.json"]) == rows
    check_png(paths["plots/accuracy_by_method.png"])
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == ["accuracy_by_method.png"]


def test_write_report_picks_plots_by_rows(tmp_path):
    rs = sweep_rows() + size_rows()
    paths = write_report(rs, tmp_path, "Sweep")
    assert {"plots/accuracy_vs_degree.png", "plots/accuracy_vs_student_size.png"} <= set(paths)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "](plots/accuracy_vs_degree.png)" in md and "](plots/accuracy_vs_student_size.png)" in md
    for p in paths.values():
        assert p.is_file()
    # a second report with one degree and one size into the same directory drops the stale plots
    one_d = rows_from_results(summary(gsm8k=(0.5, 0.05, 100)), "a", degree=4, student_params=10**8)
    paths = write_report(one_d + rows_from_results(summary(gsm8k=(0.4, 0.05, 100)), "b"), tmp_path, "One")
    assert set(paths) == {"report.md", "report.tex", "results_table.json", "plots/accuracy_by_method.png"}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy_by_method.png"]
    assert "vs_degree" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_write_report_em_f1_tables_and_nan(tmp_path):
    m = {"n": 20, "accuracy": 0.5, "accuracy_stderr": 0.1, "em": 0.45, "em_stderr": 0.11, "f1": 0.6, "f1_stderr": 0.09}
    rs = rows_from_results(summary(squad=m), "cot") + rows_from_results(summary(empty=(math.nan, math.nan, 0)), "cot")
    paths = write_report(rs, tmp_path, "QA")
    md = paths["report.md"].read_text(encoding="utf-8")
    assert "## Exact match" in md and "## F1" in md and "| cot | 60.0 ± 9.0 | – |" in md
    assert paths["report.tex"].read_text(encoding="utf-8").count(r"\begin{tabular}") == 3
    data = json.loads(paths["results_table.json"].read_text(encoding="utf-8"))  # strict JSON: no NaN
    assert data[1]["accuracy"] is None


def test_write_report_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no result rows"):
        write_report([], tmp_path, "Empty")
