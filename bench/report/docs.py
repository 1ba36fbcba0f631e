"""The documentation's generated pages, rendered from what the code and conf/ declare, so adding a
method, model, task, preset or reference result needs no hand edit of the docs:

- docs/methods.md: the methods table between two marker comments (BEGIN and END below; the prose
  around them is written by hand), one row per registered method (bench.methods.METHODS: each
  method's `summary`, `can_merge` and `knobs`, declared in its `register(...)` or its YAML);
- docs/method-details.md: every method with what it trains, its trainable count (a YAML method's
  `trainable:` expressions; a Python family's module docstring), its knobs, default lr and refusals;
- docs/catalog.md: every model, task and preset of conf/ (each file's fields and header comment; a
  preset's measured time from its header and from the records of the reference folder it names);
- docs/record.md: every field of a run record (bench/records/schema.json);
- docs/results/: one page per reference result (results/reference/<name> with a README or other
  Markdown, and/or results/reference/report/<name> with tables): the Markdown as text, the plots linked.

    peft-bench docs [docs_dir=docs] [check=true] [site=true site_dir=site]

Every generated page starts with a line saying so. check=true writes nothing and exits 1 when a page
is not what the code would generate now; site=true regenerates, then builds the MkDocs site
(mkdocs.yml beside docs_dir) with `mkdocs build --strict` into site_dir.

The site: mkdocs.yml names this file as its `hooks:` (the functions `on_config`, `on_files` and
`on_page_markdown` at the end), which add the README as a page, fill the nav's reference-results
section from docs/results/, and serve a page's links to files outside docs/ (the report's plots)
from a copy in the built site, so the pages' relative links stay right on GitHub too.
"""

from __future__ import annotations

import json
import posixpath
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Mapping

BEGIN = "<!-- generated: methods table (peft-bench docs) -->"
END = "<!-- end generated -->"
PAGE = "methods.md"
HEADER = ("`method=`", "what it trains", "merges into W", "knobs (`method.*`)")
_ROW_NAME = re.compile(r"^\| `([\w.-]+)` \|", re.MULTILINE)  # a method's row (the header's `method=` is not a name)


def cell(text: object) -> str:
    """One table cell: one line, a literal `|` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _line(cells: tuple[str, ...]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def row(method: Any) -> str:
    """A method's row: its config name, what it trains, whether it merges into W, its knobs."""
    return _line((f"`{method.name}`", cell(method.summary), "yes" if method.can_merge else "", cell(method.knobs)))


def ordered(methods: Mapping[str, Any]) -> list[Any]:
    """The table's order: the methods that train nothing first, then by name (not by file or
    registration order, so a new method lands in the same place wherever it is written)."""
    return sorted(methods.values(), key=lambda m: (bool(m.trains), m.name))


def render_table(methods: Mapping[str, Any] | None = None) -> str:
    """The Markdown table of `methods` (default: every registered method), without a final newline."""
    if methods is None:
        from bench.methods import METHODS

        methods = METHODS
    lines = [_line(HEADER), "|" + "|".join("---" for _ in HEADER) + "|"]
    return "\n".join(lines + [row(m) for m in ordered(methods)])


def _bounds(page: str, where: str) -> tuple[int, int]:
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where} has no generated methods table: put the table between the lines {BEGIN} and {END}")
    return start + len(BEGIN), end


def generated_part(page: str, where: str = PAGE) -> str:
    """What a page holds between the markers (stripped)."""
    start, end = _bounds(page, where)
    return page[start:end].strip()


def row_names(table: str) -> list[str]:
    """The method names of a table's rows, in their order."""
    return _ROW_NAME.findall(table)


def splice(page: str, table: str, where: str = PAGE) -> str:
    """The page with the text between its markers replaced by `table` (the rest left as it is); blank
    lines part the table from the markers, so no Markdown reader takes a marker for a row."""
    start, end = _bounds(page, where)
    return page[:start] + "\n\n" + table + "\n\n" + page[end:]


def write(docs_dir: Path | str, methods: Mapping[str, Any] | None = None) -> tuple[Path, bool]:
    """Regenerate the methods table in docs_dir/methods.md; returns (the page, whether it changed)."""
    path = Path(docs_dir) / PAGE
    old = path.read_text()
    new = splice(old, render_table(methods), str(path))
    if new != old:
        path.write_text(new)
    return path, new != old


# --------------------------------------------------------------------------- the generated pages
ROOT = Path(__file__).resolve().parents[2]  # the repository: conf/, results/reference/, README.md, mkdocs.yml
REFERENCE = ROOT / "results" / "reference"
CATALOG = "catalog.md"
DETAILS = "method-details.md"
RECORD = "record.md"
RESULTS = "results"  # docs/results/: one page per reference result, and its index.md
_FOLDER = re.compile(r"results/reference/(?!report/)([A-Za-z0-9_-]+)")  # a reference folder named in a header
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # a Markdown link's or image's target
_FENCE = re.compile(r"^\s*(```|~~~)")


def stamp(source: str) -> str:
    """A generated page's first line."""
    return f"<!-- generated by `peft-bench docs` from {source}; do not edit by hand -->"


def _comment(path: Path) -> list[str]:
    """A YAML file's leading comment lines, without their `#` (the `# @package` line left out)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            out.append(line[1:].removeprefix(" "))
    return out


def _prose(lines: list[str]) -> str:
    """A header comment as Markdown: its text lines joined into paragraphs, its indented lines (commands) as code blocks."""
    out: list[str] = []
    code = False
    for line in lines:
        indented = line.startswith(" ")
        if indented != code:
            out += ["", "```bash"] if indented else ["```", ""]
            code = indented
        if code:
            out.append(line.strip())
        elif out and out[-1] and not out[-1].startswith("```"):
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    if code:
        out.append("```")
    return "\n".join(out).strip()


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _records(folder: Path) -> list[dict[str, Any]]:
    """The `run` sections of a reference folder's records (sorted by file name)."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        try:
            run = json.loads(path.read_text()).get("run")
        except (OSError, ValueError):
            continue
        if isinstance(run, dict):
            runs.append(run)
    return runs


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


_MEASURED: dict[Path, str] = {}  # folder -> measured(folder), for one pages() call (emptied at its start)


def measured(folder: Path) -> str:
    """What a reference folder's records say of their time: runs, their median and total time (each
    run's own start to finish, bench.records.store.run_seconds; runs side by side overlap in wall time)."""
    if folder not in _MEASURED:
        _MEASURED[folder] = _measure(folder)
    return _MEASURED[folder]


def _measure(folder: Path) -> str:
    from bench.records.store import run_seconds

    runs = _records(folder)
    seconds = [s for s in (run_seconds(r) for r in runs) if s is not None]
    if not seconds:
        return ""
    ok = sum(1 for r in runs if r.get("status") == "success")
    text = f"{len(runs)} runs ({ok} succeeded), median {_minutes(statistics.median(seconds))} a run, {_minutes(sum(seconds))} in all"
    if any(r.get("role") == "trial" for r in runs):
        ratios = tuning_ratios(folder)
        if ratios:
            text += f"; tuning cost median {statistics.median(ratios):.2f} final runs per tuned point ({len(ratios)} point{'s' if len(ratios) > 1 else ''})"
    return text


def tuning_ratios(folder: Path) -> list[float]:
    """Each tuned point's tuning cost in final runs (its trials' run time over its mean final's), as
    the report's tuning table computes it: the figure the tuning stage is held to (at most 2, median)."""
    from bench.records.store import load_records
    from bench.report.frames import points_frame, runs_frame, stale_finals

    runs = runs_frame(load_records(folder))
    finals = runs[(runs["role"] != "trial") & ~runs["id"].isin(stale_finals(runs))] if len(runs) else runs
    if not len(finals):  # trials only (a search cut short, or a check of trials): no final to compare with
        return []
    return [float(r) for r in points_frame(finals)["tuning_ratio"].dropna()]


def preset_folders() -> dict[str, list[str]]:
    """preset name -> the reference folders its header comment names (that exist), sorted."""
    from bench.config.compose import CONF

    out = {}
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        named = sorted({m for m in _FOLDER.findall("\n".join(_comment(path))) if (REFERENCE / m).is_dir()})
        out[path.stem] = named
    return out


# --- the methods, one section each
def _family_doc(method: Any) -> tuple[str, str]:
    """(the file, its module docstring) of a Python method's family."""
    import ast
    import inspect

    path = Path(inspect.getsourcefile(method.apply) or "")
    return _repo_path(path), ast.get_docstring(ast.parse(path.read_text())) or ""


def _repo_path(path: Path | str) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _trainable_comment(path: Path) -> str:
    found = re.search(r"^trainable:[^#\n]*#\s*(.*)$", path.read_text(), re.MULTILINE)
    return found.group(1).strip() if found else ""


def render_method_details(methods: Mapping[str, Any] | None = None) -> str:
    """docs/method-details.md, whole: a section per method (the methods table's order)."""
    from bench.config.compose import CONF

    if methods is None:
        from bench.methods import METHODS

        methods = METHODS
    out = [stamp("the method registry (bench/methods/) and conf/method/"), "", "# Methods in detail", "",
           "Every `method=`, as the code declares it: what it trains, whether it merges into W, its trainable",
           "count (the formula the tests check its parameter count against), its knobs, its default learning",
           "rate and what it refuses. The overview is the [methods table](methods.md); a Python family's formula",
           "is stated in its module's docstring, quoted once under [families](#families).", ""]
    families: dict[str, str] = {}
    for method in ordered(methods):
        yaml_path = CONF / "method" / f"{method.name}.yaml"
        spec = _yaml(yaml_path) if yaml_path.is_file() else {}
        out += [f"## `{method.name}`", ""]
        about = " ".join(_comment(yaml_path)) if yaml_path.is_file() else ""
        if about:
            out += [about, ""]
        facts = [f"- **trains**: {cell(method.summary) or '—'}" if method.trains else "- **trains**: nothing (evaluates the model as it is)",
                 f"- **merges into W**: {'yes' if method.can_merge else 'no'}"]
        trainable = spec.get("trainable") if isinstance(spec, dict) else None
        if isinstance(trainable, dict):
            parts = [f"sum over targeted modules of `{trainable['per_target']}`" if str(trainable.get("per_target", "0")) != "0" else "",
                     f"`{trainable['once']}` once" if str(trainable.get("once", "0")) != "0" else ""]
            facts.append(f"- **trainable count**: {' + '.join(p for p in parts if p) or '0'} + the task head")
            if _trainable_comment(yaml_path):
                facts.append(f"  ({cell(_trainable_comment(yaml_path))})")
            for rule in trainable.get("requires") or ():
                facts.append(f"- **requires of every target** (else refused before loading): `{rule}`")
        elif not method.source:
            where, doc = _family_doc(method)
            families[where] = doc
            anchor = "family-" + re.sub(r"[^a-z0-9]+", "-", Path(where).stem.lower())
            facts.append(f"- **trainable count**: as its family's docstring states ([`{where}`](#{anchor}))")
        if spec.get("peft_type"):
            facts.append(f"- **PEFT type**: `{spec['peft_type']}`; save, load and merge go through peft")
        facts.append(f"- **knobs** (`method.*`): {method.knobs or '(no knobs)'}")
        if isinstance(spec, dict) and spec.get("lr") is not None:
            facts.append(f"- **default lr**: {spec['lr']} (`train.lr` overrides)")
        if method.refuses:
            facts.append("- **refuses** (words of its error): " + ", ".join(f"“{cell(r)}”" for r in method.refuses))
        if method.golden:
            facts.append("- **golden first losses pinned on**: " + ", ".join(f"`{m}`" for m in sorted(method.golden)))
        facts.append(f"- **declared in**: `{_repo_path(method.source) if method.source else _family_doc(method)[0]}`"
                     + (f" and `conf/method/{method.name}.yaml`" if yaml_path.is_file() and not method.source else ""))
        out += facts + [""]
    if families:
        out += ["## Families", "", "The methods written in Python, one file per family; each file's docstring states the",
                "trainable count the registry's `formula` computes.", ""]
        for where in sorted(families):
            anchor = "family-" + re.sub(r"[^a-z0-9]+", "-", Path(where).stem.lower())
            out += [f"### `{where}` {{#{anchor}}}", "", "```text", families[where], "```", ""]
    return "\n".join(out).rstrip() + "\n"


# --- the catalog: models, tasks, presets
_PARAMS = re.compile(r"(\d[\d.,]*\s?[MB])(?= params|\b(?: parameters))")


def _model_size(spec: dict[str, Any], comment: str) -> str:
    size = spec.get("size") or {}
    parts = []
    hidden = size.get("hidden_size") or size.get("d_model")
    layers = size.get("num_hidden_layers") or size.get("num_layers")
    if hidden:
        parts.append(f"hidden {hidden}")
    if layers:
        parts.append(f"{layers} layers")
    found = _PARAMS.search(comment)
    if found:
        parts.insert(0, found.group(1) + " params")
    return ", ".join(parts)


def _model_source(spec: dict[str, Any]) -> str:
    source = spec.get("source", "")
    if source == "config":
        return f"config: `{spec.get('arch', '?')}`, random weights"
    return f"{source}: `{spec.get('path', '?')}`" + (f", quantized `{spec['quantize']}`" if spec.get("quantize") else "")


def _task_data(spec: dict[str, Any]) -> str:
    where = f"{spec.get('format', '?')}: `{spec.get('path', '?')}`" if spec.get("path") else str(spec.get("format", ""))
    splits = [str(spec[k]) for k in ("train_split", "eval_split") if spec.get(k)]
    return where + (f" ({' → '.join(splits)})" if splits else "")


def _task_scores(spec: dict[str, Any]) -> str:
    labels = spec.get("label_names") or spec.get("labels")
    metrics = ", ".join(spec.get("metrics") or [])
    return (f"{len(labels)} labels; " if labels else "") + metrics


def render_catalog() -> str:
    """docs/catalog.md, whole: every model, task and preset of conf/, from each YAML's fields and header comment."""
    from bench.config.compose import CONF
    from bench.config.listing import duration, summary

    out = [stamp("conf/model, conf/task and conf/experiment (each file's fields and header comment)"), "",
           "# Catalog: models, tasks and presets", "",
           "What you can choose on the command line, one row per YAML file; `peft-bench ls` prints the same names.",
           "Methods are listed in [methods.md](methods.md) and [method-details.md](method-details.md).", "",
           "## Models (`model=NAME`)", "", "| name | family | source | size | what it is |", "|---|---|---|---|---|"]
    for path in sorted((CONF / "model").glob("*.yaml")):
        spec, comment = _yaml(path), " ".join(_comment(path))
        out.append(_line((f"`{path.stem}`", cell(spec.get("family", "")), cell(_model_source(spec)),
                          cell(_model_size(spec, comment)), cell(comment) or "(no description)")))
    out += ["", "## Tasks (`task=NAME`)", "", "| name | kind | data (train → scored) | labels, metrics | what it is |", "|---|---|---|---|---|"]
    for path in sorted((CONF / "task").glob("*.yaml")):
        spec, comment = _yaml(path), " ".join(_comment(path))
        out.append(_line((f"`{path.stem}`", cell(spec.get("kind", "")), cell(_task_data(spec)), cell(_task_scores(spec)),
                          cell(comment) or "(no description)")))
    folders = preset_folders()
    out += ["", "## Presets (`-m experiment=NAME`)", "",
            "A preset is a sweep of the one app; its header comment gives the launch command and its measured",
            "time, and where it names a folder of `results/reference/`, that folder's records give their own",
            "(each run start to finish; runs side by side overlap in wall time).", "",
            "| name | time its header states | what it is |", "|---|---|---|"]
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        out.append(_line((f"[`{path.stem}`](#{_slug(path.stem)})", cell(duration(path)), cell(summary(path)))))
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        out += ["", f"### {path.stem}", "", _prose(_comment(path)) or "(no header comment)", ""]
        for name in folders[path.stem]:
            page = f"{RESULTS}/{name}.md" if any(_result_sources(name)[:2]) else ""
            link = f"[`results/reference/{name}`]({page})" if page else f"`results/reference/{name}`"
            out.append(f"- records in {link}: {measured(REFERENCE / name) or 'no records with times'}")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"


def _slug(text: str) -> str:
    """Python-Markdown's toc anchor of a plain heading."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


# --- the record's fields
def _type(node: dict[str, Any]) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kinds = node.get("type", "any")
    text = " or ".join(kinds) if isinstance(kinds, list) else str(kinds)
    items = node.get("items")
    if isinstance(items, dict) and items.get("type"):
        text += f" of {_type(items)}"
    bounds = [f"≥ {node['minimum']}" if "minimum" in node else "", f"≤ {node['maximum']}" if "maximum" in node else "",
              f"matching `{node['pattern']}`" if "pattern" in node else ""]
    return text + "".join(f", {b}" for b in bounds if b)


def _fields(node: dict[str, Any], prefix: str, rows: list[tuple[str, ...]]) -> None:
    required = set(node.get("required") or ())
    for name, child in (node.get("properties") or {}).items():
        path = prefix + name
        rows.append((f"`{path}`", cell(_type(child)), "yes" if name in required else "", cell(child.get("description", ""))))
        if isinstance(child, dict):
            _fields(child, path + ".", rows)
            if isinstance(child.get("items"), dict):
                _fields(child["items"], path + "[].", rows)
            if isinstance(child.get("additionalProperties"), dict):
                _fields(child["additionalProperties"], path + ".*.", rows)


def _condition(node: dict[str, Any], prefix: str = "") -> str:
    """A schema `if` as words: `run.status` is `"success"`."""
    for name, child in (node.get("properties") or {}).items():
        if "const" in child or "enum" in child:
            return f"`{prefix + name}` is {_type(child)}"
        return _condition(child, prefix + name + ".")
    return f"`{json.dumps(node)}`"


def render_record() -> str:
    """docs/record.md, whole: every field of bench/records/schema.json, depth first in the schema's order."""
    schema = json.loads((ROOT / "bench" / "records" / "schema.json").read_text())
    rows: list[tuple[str, ...]] = []
    _fields(schema, "", rows)
    out = [stamp("bench/records/schema.json"), "", "# The record's fields", "",
           f"{schema.get('description', '')} Each run writes one JSON file (written atomically, never edited);",
           "what each section measures is described in [the report and the records](report.md#where-results-go).", "",
           "| field | type | required | meaning |", "|---|---|---|---|", *(_line(r) for r in rows)]
    if "if" in schema and "required" in schema.get("then", {}):
        out += ["", f"When {_condition(schema['if'])}, these sections are required too: "
                + ", ".join(f"`{k}`" for k in schema["then"]["required"]) + "."]
    return "\n".join(out) + "\n"


# --- the reference results
def _result_sources(name: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(its Markdown files, README first; its report tables; its report plots) of a reference result."""
    folder, report = REFERENCE / name, REFERENCE / "report" / name
    md = sorted(folder.glob("*.md"), key=lambda p: (p.name != "README.md", p.name))
    return md, sorted((report / "tables").glob("*.md")), sorted((report / "plots").glob("*.png"))


def result_names() -> list[str]:
    """Every reference result that has a page: a folder of results/reference/ or of its report/ with Markdown."""
    names = {p.name for p in REFERENCE.iterdir() if p.is_dir() and p.name != "report"} if REFERENCE.is_dir() else set()
    names |= {p.name for p in (REFERENCE / "report").iterdir() if p.is_dir()} if (REFERENCE / "report").is_dir() else set()
    return sorted(n for n in names if any(_result_sources(n)[:2]))


def _relocate(text: str, source_dir: str, page_dir: str) -> str:
    """Relative links of Markdown written in source_dir (repository paths), rewritten for a page in page_dir."""
    def move(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^([a-z]+:|#|/)", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        new = posixpath.relpath(posixpath.normpath(posixpath.join(source_dir, path)), page_dir)
        return match.group(1) + new + (f"#{anchor}" if anchor else "") + match.group(3)

    return _LINK.sub(move, text)


def _headings(text: str, top: int) -> tuple[str, str]:
    """(its first level-1 heading's text or "", the text with that heading removed and the rest shifted so that the
    highest heading left sits at level `top`); headings in code blocks left alone."""
    lines, fenced, title, levels = text.splitlines(), False, "", []
    for line in lines:
        fenced = fenced != bool(_FENCE.match(line))
        found = not fenced and re.match(r"^(#{1,6}) ", line)
        if found:
            levels.append(len(found.group(1)))
    out, fenced = [], False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        found = None if fenced else re.match(r"^(#{1,6}) (.*)$", line)
        if found and len(found.group(1)) == 1 and not title and top == 2:
            title = found.group(2).strip()
            continue
        if found:
            rest = [lv for lv in levels if not (lv == 1 and top == 2)] or [top]
            level = min(6, len(found.group(1)) - min(rest) + top)
            line = "#" * level + " " + found.group(2)
        out.append(line)
    return title, "\n".join(out).strip()


def render_result(name: str) -> str:
    """docs/results/<name>.md, whole: the folder's README (its title the page's), its other Markdown, the report's
    tables as text and its plots as images (linked where they are: the site serves them, GitHub shows them)."""
    markdown, tables, plots = _result_sources(name)
    page_dir = f"docs/{RESULTS}"
    readme = markdown[0] if markdown and markdown[0].name == "README.md" else None
    title, body = ("", "")
    if readme is not None:
        title, body = _headings(_relocate(readme.read_text(), f"results/reference/{name}", page_dir), 2)
    presets = [p for p, named in preset_folders().items() if name in named]
    if not title:
        from bench.config.compose import CONF
        from bench.config.listing import summary

        title = f"{name}: {summary(CONF / 'experiment' / f'{presets[0]}.yaml')}" if presets else f"Reference result: {name}"
    out = [stamp(f"results/reference/{name} and results/reference/report/{name}"), "", f"# {title}", ""]
    facts = []
    if (REFERENCE / name).is_dir():
        facts.append(f"- records: `results/reference/{name}`" + (f": {measured(REFERENCE / name)}" if measured(REFERENCE / name) else ""))
    if tables or plots:
        facts.append(f"- report: `results/reference/report/{name}` (`python -m bench report results_dir=results/reference/{name}`"
                     f" `output_dir=results/reference/report/{name}` rebuilds it from the records)")
    if presets:
        facts.append("- presets: " + ", ".join(f"[`{p}`](../catalog.md#{_slug(p)})" for p in presets))
    out += facts + [""]
    if body:
        out += [body, ""]
    for path in (m for m in markdown if m is not readme):
        _, text = _headings(_relocate(path.read_text(), f"results/reference/{name}", page_dir), 3)
        out += [f"## `{path.name}`", "", text, ""]
    if tables:
        out += ["## Report tables", ""]
        for path in tables:
            _, text = _headings(_relocate(path.read_text(), f"results/reference/report/{name}/tables", page_dir), 4)
            out += [f"### `{path.name}`", "", text, ""]
    if plots:
        out += ["## Plots", ""]
        for path in plots:
            out += [f"![{path.stem}](../../results/reference/report/{name}/plots/{path.name})", ""]
    return "\n".join(out).rstrip() + "\n"


def render_results_index(results: Mapping[str, str]) -> str:
    """docs/results/index.md, whole: every reference result with a page (name -> its page), its title and records."""
    out = [stamp("results/reference"), "", "# Reference results, folder by folder", "",
           "Every folder of `results/reference/` (the committed records) and of `results/reference/report/` (the",
           "tables and plots `peft-bench report` made from them) that holds Markdown, one page each, with its text",
           "and tables as committed. What they show is discussed in [reference experiments](../reference-results.md).", "",
           "| result | what it is | records |", "|---|---|---|"]
    for name, page in sorted(results.items()):
        first = page.splitlines()[2].removeprefix("# ")
        out.append(_line((f"[`{name}`]({name}.md)", cell(first), cell(measured(REFERENCE / name)) if (REFERENCE / name).is_dir() else "")))
    return "\n".join(out) + "\n"


def pages(folder: Path | str, methods: Mapping[str, Any] | None = None) -> dict[Path, str]:
    """Every generated page under `folder` (a docs folder holding methods.md) and what it should hold
    (with `methods` in place of every registered method, if given)."""
    folder = Path(folder)
    _MEASURED.clear()  # records read afresh on every call
    table = folder / PAGE
    wanted = {table: splice(table.read_text(), render_table(methods), str(table)), folder / DETAILS: render_method_details(methods),
              folder / CATALOG: render_catalog(), folder / RECORD: render_record()}
    results = {name: render_result(name) for name in result_names()}
    wanted[folder / RESULTS / "index.md"] = render_results_index(results)
    wanted.update({folder / RESULTS / f"{name}.md": page for name, page in results.items()})
    return wanted


def leftovers(folder: Path | str, wanted: Mapping[Path, str]) -> list[Path]:
    """Pages of docs/results/ that nothing generates any more (a reference folder gone or renamed)."""
    return sorted(p for p in (Path(folder) / RESULTS).glob("*.md") if p not in wanted)


def build_site(folder: Path, site_dir: str) -> int:
    """`mkdocs build --strict` of the mkdocs.yml beside the docs folder, into site_dir."""
    import importlib.util
    import os
    import subprocess
    import time

    missing = [pkg for pkg, module in (("mkdocs", "mkdocs"), ("mkdocs-material", "material")) if importlib.util.find_spec(module) is None]
    if missing:
        print(f"docs: site=true needs {' and '.join(missing)}, which is not installed: pip install -e '.[docs]'", file=sys.stderr)
        return 1
    config = folder.resolve().parent / "mkdocs.yml"
    if not config.is_file():
        print(f"docs: site=true builds {config}, which does not exist", file=sys.stderr)
        return 1
    target = Path(site_dir).resolve()
    start = time.monotonic()
    quiet = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material 9.7+ prints a banner about its successor on every build
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(config), "-d", str(target)], env=quiet)
    if done.returncode:
        print(f"docs: mkdocs build --strict failed (exit {done.returncode}): the warnings above name each broken link or page", file=sys.stderr)
        return 1
    print(f"docs: built the site in {time.monotonic() - start:.1f} s: {target}/index.html")
    return 0


def verb(opts: Any, cfg: Any = None, overrides: list[str] | None = None) -> int:
    """`peft-bench docs [docs_dir=DIR] [check=true] [site=true site_dir=DIR]`: regenerate (or check) the
    pages that list things; with site=true, then build the site."""
    from bench.errors import ConfigError

    folder = Path(opts.docs_dir)
    if not (folder / PAGE).is_file():
        raise ConfigError("docs_dir", str(folder), f"a folder that holds {PAGE}")
    wanted = pages(folder)
    stale = [p for p, text in wanted.items() if not p.is_file() or p.read_text() != text]
    gone = leftovers(folder, wanted)
    if opts.check:
        for p in stale + gone:
            print(f"docs: {p} is not what `peft-bench docs` generates: run peft-bench docs docs_dir={folder}", file=sys.stderr)
        if not stale and not gone:
            print(f"docs: the {len(wanted)} generated pages under {folder} are up to date")
        return 1 if stale or gone else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(wanted[p])
    for p in gone:
        p.unlink()
    changed = [*map(str, stale), *(f"{p} (removed)" for p in gone)]
    print(f"docs: wrote {', '.join(changed)}" if changed else "docs: unchanged")
    return build_site(folder, str(opts.get("site_dir", "site"))) if opts.get("site", False) else 0


# --------------------------------------------------------------------------- the site's hooks
# mkdocs.yml `hooks: [bench/report/docs.py]`: MkDocs loads this file and calls these functions. The pages
# keep the links that are right on GitHub (`../results/...png`, `../README.md`); here they become links
# the site resolves: the README is a page of the site (readme.md), a reference folder's README its
# generated page, and any other file of the repository a copy in the built site under repo/.
README_PAGE = "readme.md"
COPIES = "repo"


def _site_path(repo_path: str, docs: str) -> str | None:
    """Where a repository file is in the site (a path under docs_dir), or None where it is not served."""
    if repo_path.startswith(docs + "/"):
        return repo_path[len(docs) + 1:]
    if repo_path == "README.md":
        return README_PAGE
    found = re.fullmatch(r"results/reference/([\w-]+)/README\.md", repo_path)
    if found and (ROOT / docs / RESULTS / f"{found.group(1)}.md").is_file():
        return f"{RESULTS}/{found.group(1)}.md"
    if not repo_path.endswith(".md") and not repo_path.startswith("..") and (ROOT / repo_path).is_file():
        return f"{COPIES}/{repo_path}"
    return None


def _outside_links(markdown: str, page_repo: str, docs: str) -> dict[str, tuple[str, str]]:
    """target as written -> (its repository path, its site path) for every relative link that leaves the page's
    folder tree: from a page of docs_dir, a link out of it; from the README, every relative link."""
    found = {}
    for target in {m.group(2) for m in _LINK.finditer(markdown)}:
        if re.match(r"^([a-z]+:|#|/)", target):
            continue
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo), target.partition("#")[0]))
        if repo.startswith(docs + "/") and page_repo.startswith(docs + "/"):
            continue  # MkDocs resolves a link between two pages of docs_dir itself
        site = _site_path(repo, docs)
        if site is not None:
            found[target] = (repo, site)
    return found


def _docs_name(config: Any) -> str:
    return Path(config["docs_dir"]).resolve().relative_to(ROOT).as_posix()


def on_config(config: Any) -> Any:
    """The nav's reference-results section (the entry naming results/index.md) gets every generated results page."""
    folder = Path(config["docs_dir"]) / RESULTS
    extra = [{p.stem: f"{RESULTS}/{p.name}"} for p in sorted(folder.glob("*.md")) if p.name != "index.md"]  # titled by folder name

    def fill(items: Any) -> Any:
        if isinstance(items, list):
            if f"{RESULTS}/index.md" in items:
                return items + extra
            return [fill(i) for i in items]
        if isinstance(items, dict):
            return {k: fill(v) for k, v in items.items()}
        return items

    config["nav"] = fill(config["nav"])
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the README as a page and a copy of every repository file a page links outside docs_dir."""
    from mkdocs.structure.files import File

    docs = _docs_name(config)
    readme = ROOT / "README.md"
    sources = [(f"{docs}/{f.src_uri}", Path(f.abs_src_path).read_text()) for f in files.documentation_pages() if f.abs_src_path]
    if readme.is_file():
        files.append(File.generated(config, README_PAGE, abs_src_path=str(readme)))
        sources.append(("README.md", readme.read_text()))
    for page_repo, markdown in sources:
        for repo, site in _outside_links(markdown, page_repo, docs).values():
            if site.startswith(COPIES + "/") and files.get_file_from_path(site) is None:
                files.append(File.generated(config, site, abs_src_path=str(ROOT / repo)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """A page's links that leave docs_dir, pointed at where the site serves their targets."""
    docs = _docs_name(config)
    src = page.file.src_uri
    page_repo = "README.md" if src == README_PAGE else f"{docs}/{src}"
    moved = _outside_links(markdown, page_repo, docs)
    if not moved:
        return markdown

    def move(match: re.Match[str]) -> str:
        target = match.group(2)
        if target not in moved:
            return match.group(0)
        anchor = target.partition("#")[2]
        new = posixpath.relpath(moved[target][1], posixpath.dirname(src) or ".")
        return match.group(1) + new + (f"#{anchor}" if anchor else "") + match.group(3)

    return _LINK.sub(move, markdown)
