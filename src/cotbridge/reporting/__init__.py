"""Result rows, Markdown/LaTeX tables, plots and the report a run writes."""
