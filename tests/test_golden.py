"""Golden losses: the first training losses of a tiny model under each method, pinned (as torchtune
pins its recipes' first losses). A change that alters what a method trains, how a batch is built,
the schedule or the loss moves these numbers and fails here, long before a reference run would
show it. Each method declares its own, in its file: `golden={model: (loss, loss, loss), ...}` in
its `register(...)` (bench/methods/), so a new method carries its numbers with it and no central
list names it. A deliberate change re-pins them:

    PEFT_BENCH_PIN_GOLDEN=1 python -m pytest tests/test_golden.py              # tiny-bert, tiny-llama
    PEFT_BENCH_PIN_GOLDEN=1 python -m pytest tests/test_golden.py -m system    # tiny-mpnet, tiny-gemma3

which rewrites the `golden=` literal in the `register(...)` of each method whose numbers moved
(beyond REL/ABS; the models it did not run, and those that did not move, keep theirs), or, where
that call cannot be rewritten safely, prints the literal to paste there; `git diff bench/methods`
shows what moved.
"""

from __future__ import annotations

import ast
import inspect
import math
import os
from pathlib import Path

import pytest
import torch

from bench.methods import METHODS
from bench.run.pipeline import seed_everything
from bench.run.train import train
from conftest import ROOT, build, tiered

PIN = os.environ.get("PEFT_BENCH_PIN_GOLDEN") == "1"
PIN_COMMAND = "PEFT_BENCH_PIN_GOLDEN=1 python -m pytest tests/test_golden.py"
MODELS = ("tiny-bert", "tiny-llama")  # an encoder classifier and a decoder LM: the two loss paths
MORE = ("tiny-mpnet", "tiny-gemma3")  # the families of mpnet-base and gemma3-270m: system tier
STEPS = 3
REL, ABS = 1e-4, 1e-5  # a loss moved when it differs by more than this (summation order moves the last bits)
CASES = [(model, name) for model in (*MODELS, *MORE) for name in sorted(METHODS) if METHODS[name].trains]


def _first_losses(cfg_factory, model: str, method: str) -> list[float] | None:
    """STEPS losses from seed 0 on one thread (a fixed reduction order); None if the method refuses the model."""
    from bench.errors import ConfigError

    cfg = cfg_factory(f"model={model}", f"method={method}", *METHODS[method].examples[0], f"train.max_steps={STEPS}",
                      "train.log_every=1", "train.warmup_ratio=0.0", "train.diverge_factor=0", "seed=0")
    seed_everything(0)  # the head's and the adapters' init draw from the global generator
    try:
        base, task, _ = build(cfg, n_train=8)
    except ConfigError as err:
        if any(word in str(err) for word in METHODS[method].refuses):
            return None
        raise
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(METHODS[method].apply(base, cfg.method, task), task, cfg, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return [float(p["loss"]) for p in result.curve]


def _close(losses, golden) -> bool:
    return list(losses) == pytest.approx(list(golden), rel=REL, abs=ABS)


# --------------------------------------------------------------- the literal in the method's file
def method_file(method: str) -> Path:
    """Where its golden= lives: the method's Python file, or the YAML that declares it."""
    return Path(METHODS[method].source or inspect.getsourcefile(METHODS[method].apply)).resolve()


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def golden_literal(golden: dict[str, tuple[float, ...]], indent: int) -> str:
    """`golden={...}` as the method's file writes it: one model a line, the pinned models' order,
    every float at full precision (repr round-trips)."""
    order = [m for m in (*MODELS, *MORE) if m in golden] + sorted(set(golden) - {*MODELS, *MORE})
    items = [f'"{m}": ({", ".join(repr(float(x)) for x in golden[m])}{"," if len(golden[m]) == 1 else ""})' for m in order]
    return "golden={" + (",\n" + " " * (indent + len("golden={"))).join(items) + "}"


def _register_call(tree: ast.AST, method: str) -> ast.Call | None:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "register"
             and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == method]
    return calls[0] if len(calls) == 1 else None


def rewrite_golden_yaml(path: Path, golden: dict[str, tuple[float, ...]]) -> bool:
    """A YAML method's `about.golden` block (the lines under `  golden:`), or one added after `about:`;
    False, with the file untouched, when the result does not read back as `golden`."""
    from omegaconf import OmegaConf

    lines = path.read_text().splitlines(keepends=True)
    order = [m for m in (*MODELS, *MORE) if m in golden] + sorted(set(golden) - {*MODELS, *MORE})
    block = ["  golden:                 # first losses, seed 0 (tests/test_golden.py pins them)\n"]
    block += [f"    {m}: [{', '.join(repr(float(x)) for x in golden[m])}]\n" for m in order]
    at = next((i for i, line in enumerate(lines) if line.startswith("  golden:")), None)
    if at is not None:
        end = at + 1
        while end < len(lines) and lines[end].startswith("    "):
            end += 1
        new = lines[:at] + block + lines[end:]
    else:
        about = next((i for i, line in enumerate(lines) if line.startswith("about:")), None)
        if about is None:
            return False
        new = lines[:about + 1] + block + lines[about + 1:]
    text = "".join(new)
    try:
        read = OmegaConf.to_container(OmegaConf.create(text))["about"]["golden"]
    except Exception:
        return False
    if {m: tuple(v) for m, v in read.items()} != golden:
        return False
    path.write_text(text)
    return True


def rewrite_golden(path: Path, method: str, golden: dict[str, tuple[float, ...]]) -> bool:
    """Put `golden` into the `register("<method>", ...)` call of path: replace its `golden={...}`
    dict literal, or add one after its last argument. False, with the file untouched, when the call
    is not found once, its golden is not a dict literal, or the result does not read back as `golden`."""
    if path.suffix == ".yaml":
        return rewrite_golden_yaml(path, golden)
    src = path.read_text()
    call = _register_call(ast.parse(src), method)
    if call is None:
        return False
    lines = src.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def at(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    keyword = next((k for k in call.keywords if k.arg == "golden"), None)
    if keyword is not None:
        if not isinstance(keyword.value, ast.Dict):
            return False
        indent = at(keyword.value.lineno, keyword.value.col_offset) - starts[keyword.value.lineno - 1] - len("golden=")
        start, end = at(keyword.value.lineno, keyword.value.col_offset), at(keyword.value.end_lineno, keyword.value.end_col_offset)
        new = src[:start] + golden_literal(golden, indent).removeprefix("golden=") + src[end:]
    else:
        first = call.args[0]
        indent = at(first.lineno, first.col_offset) - starts[first.lineno - 1]
        last = max([*call.args, *(k.value for k in call.keywords)], key=lambda n: (n.end_lineno, n.end_col_offset))
        where = at(last.end_lineno, last.end_col_offset)
        new = src[:where] + ",\n" + " " * indent + golden_literal(golden, indent) + src[where:]
    try:
        again = _register_call(ast.parse(new), method)
        value = ast.literal_eval(next(k.value for k in again.keywords if k.arg == "golden"))
    except (SyntaxError, ValueError, StopIteration, AttributeError):
        return False
    if {m: tuple(v) for m, v in value.items()} != golden:
        return False
    path.write_text(new)
    return True


def _report(config: pytest.Config, lines: list[str]) -> None:
    """Lines on the terminal, past pytest's capture (the pin mode's summary)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def measured(pytestconfig):
    """Pin mode: method -> model -> its losses (None: refused), written into the methods' files when
    the module's tests end."""
    table: dict[str, dict[str, tuple[float, ...] | None]] = {}
    yield table
    if not PIN:
        return
    lines = []
    for method, runs in sorted(table.items()):
        old = dict(METHODS[method].golden)
        moved = {m: v for m, v in runs.items() if v is not None and not (m in old and _close(v, old[m]))}  # last-bit noise stays
        new = {m: v for m, v in {**old, **moved}.items() if runs.get(m, ()) is not None}  # a refused model loses its losses
        if new == old:
            continue
        path = method_file(method)
        if rewrite_golden(path, method, new):
            changed = [m for m in (*MODELS, *MORE, *sorted(set(new) | set(old))) if new.get(m) != old.get(m)]
            lines.append(f"golden: re-pinned {method} in {shown(path)} ({', '.join(dict.fromkeys(changed))})")
        else:
            lines.append(f"golden: {method}'s losses moved; put this in its register(\"{method}\", ...) in {shown(path)}:\n"
                         f"          {golden_literal(new, 10)}")
    _report(pytestconfig, lines or ["golden: no method's first losses moved"])


YAML_DEFAULT = ("oft", "vera")  # of the methods declared by a YAML (one code path), these run in the default tier


@pytest.mark.parametrize("model,method", tiered(CASES, keep=[c for c in CASES if c[0] in MODELS
                                                            and (not METHODS[c[1]].source or c[1] in YAML_DEFAULT)]))
def test_first_losses_match_the_pinned_ones(cfg_factory, measured, model, method):
    losses = _first_losses(cfg_factory, model, method)
    golden = METHODS[method].golden
    if losses is None:
        if PIN:
            measured.setdefault(method, {})[model] = None
        assert PIN or model not in golden, f"{method} has golden losses for {model} but now refuses it: remove them from {shown(method_file(method))}"
        pytest.skip(f"{method} refuses {model} (declared)")
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    if PIN:
        measured.setdefault(method, {})[model] = tuple(losses)
        return
    where = f'the register("{method}", ...) call in {shown(method_file(method))}'
    assert model in golden, (f"no golden losses for {method} on {model}: add {golden_literal({model: tuple(losses)}, 0).removeprefix('golden=')[1:-1]} "
                             f"to golden={{...}} in {where} (or run {PIN_COMMAND}, and with -m system, which writes every model's there)")
    assert _close(losses, golden[model]), (
        f"{method} on {model}: first losses moved from {golden[model]} to {tuple(losses)} (golden= in {where}; "
        f"a deliberate change re-pins with {PIN_COMMAND})")


def test_golden_losses_name_only_pinned_models():
    """A method declares losses only for the models this module runs, and only if it trains (a
    renamed model or a method that stopped training leaves no stale numbers behind)."""
    for name, method in METHODS.items():
        assert set(method.golden) <= {*MODELS, *MORE}, f"{name} pins losses for models this test never runs: {sorted(set(method.golden) - {*MODELS, *MORE})}"
        assert method.trains or not method.golden, f"{name} trains nothing but declares golden losses"
        assert all(len(v) == STEPS and all(isinstance(x, float) for x in v) for v in method.golden.values()), f"{name}: golden losses are {STEPS} floats a model"


def test_the_golden_rewrite_keeps_the_file_and_every_digit(tmp_path: Path):
    """The pin mode's rewrite: it replaces the literal (or adds one), and the file reads back with
    exactly the numbers it was given, the rest of the call untouched."""
    src = ('@register("toy", save=s, load=l, formula=f,\n'
           '          summary="B·A (+ a head)",\n'
           '          golden={"tiny-bert": (0.1, 0.2, 0.3)})\n'
           'def apply(model, cfg, task):\n    return model\n')
    path = tmp_path / "toy.py"
    path.write_text(src)
    pinned = {"tiny-bert": (0.6513245105743408, 0.793768048286438, 0.7901844382286072), "tiny-llama": (1.0, 2.0, 3.0)}
    assert rewrite_golden(path, "toy", pinned)
    text = path.read_text()
    assert text.startswith(src.split("golden=")[0]) and text.endswith(")\ndef apply(model, cfg, task):\n    return model\n")
    call = _register_call(ast.parse(text), "toy")
    assert ast.literal_eval(next(k.value for k in call.keywords if k.arg == "golden")) == pinned
    path.write_text(src.replace(',\n          golden={"tiny-bert": (0.1, 0.2, 0.3)}', ""))  # no golden yet: one is added
    assert rewrite_golden(path, "toy", pinned)
    call = _register_call(ast.parse(path.read_text()), "toy")
    assert ast.literal_eval(next(k.value for k in call.keywords if k.arg == "golden")) == pinned
    assert not rewrite_golden(path, "other", pinned)  # no such call: untouched, the caller prints the literal
