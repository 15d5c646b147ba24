"""``cotbridge view``: one self-contained HTML page of a run (every question, the teacher's samples with their
curation verdicts, each method's output) or of two runs side by side. collect.py reads the files, model.py merges
them into the page's rows, page.py writes the page (template.html, view.css, view.js inlined)."""

from cotbridge.view.page import write_view

__all__ = ["write_view"]
