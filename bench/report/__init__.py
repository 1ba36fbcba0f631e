"""The report: run records in, tables, plots and a dashboard out (the records are the only input).

    peft-bench report results_dir=DIR[,DIR...] [output_dir=DIR] [sweep=PATH] [wandb=true]
    peft-bench report ...   (the same)

Without output_dir it prints the table of every record. With it, it writes
  tables/<model>__<task>.md and .csv   one row per point (a config over its seeds)
  tables/points.csv, tables/runs.csv   every point and every run, all models and tasks
  plots/<model>__<task>__<figure>.png and .svg
  dashboard.html                       one self-contained page (works offline)
and with wandb=true logs the table and plots to a W&B report run in the sweep's group.

A point is a config without its seed: its score is the mean over its successful seeds with a 95%
t-interval. Failed and OOM runs are rows with their reason and never enter fronts or curves.
Random-weight models are reported for cost only: their quality is left blank. A classification
run that predicted one label for every example is flagged (it learned the class prior at best),
and every classification table ends with the majority-class baseline of its eval split.
A file under results_dir that is not a readable record is skipped with one line on stderr.

The package, in the order it depends (nothing depends back):
  frames     records -> runs -> points (pandas), model sizes, the Pareto front
  tables     one renderer for Markdown, CSV and the dashboard's rows
  paired     the paired bootstrap over seeds and examples, groups, the critical-difference diagram
  plots      matplotlib figures      dashboard   the HTML page      wandb_log   the W&B mirror
  cli        the `report` verb, which builds them all
  docs       the documentation's generated pages and the site (the `docs` verb)
  wandb_workspace   a saved W&B workspace for a project the suite logged to (the `wandb-workspace` verb)
"""

from bench.report.cli import build, read
from bench.report.frames import CONSTANT, MIB, model_sizes, pareto_front, points_frame, runs_frame, scored
from bench.report.tables import baseline_line, duration_line, markdown_table, row_of, table_rows, write_tables

__all__ = ["CONSTANT", "MIB", "baseline_line", "build", "duration_line", "markdown_table", "model_sizes", "pareto_front",
           "points_frame", "read", "row_of", "runs_frame", "scored", "table_rows", "write_tables"]
