"""The tuning stage of a sweep: for each point (model x task x method with its knobs), try learning
rates on a validation split carved from the training rows, choose the best there, then run the
point's finals (every seed of the sweep) at that learning rate, trained on the rest of the training
rows and scored on the reported split. Nothing is ever chosen on the reported split.

Every trial is an ordinary run with its own record (`run.role` = trial), so it resumes and skips
like any sweep point; a trial the pruner stops is a `pruned` row and a diverged one a `failed` row,
and neither is ever chosen. The engine is Optuna: its GridSampler (grid mode: every learning rate
of a log grid, which draws the sensitivity plot) or its seeded TPESampler (tpe mode), and its
MedianPruner, which each trial consults at its periodic validation scores against the trials of
its point that have finished (read from their records). Or (tune.pruner=halving) successive
halving (Jamieson & Talwalkar 2016), rung by rung: every rate trains with the finals' schedule
(warmup and decay over the finals' steps) but stops at the first rung (min_steps); the best
1/reduction of them (at least two) train again to the next rung (min_steps x reduction), and so
on; the best at the last rung is chosen, and its finals are the top rung. The trials train what
the finals train, only shorter, so the choice is not biased to high rates the way short trials
with their own short schedule are, and the search trains about n x min_steps + n/reduction x
min_steps x reduction steps, plus each trial's start (loading, tokenizing, one score): 7 rates
over 250 steps train 364 steps, 1.46 final runs (glue_minilm_tuned measured 1.44 to 1.92, median 1.64, with the
start-ups).

`run_tuning` holds the orchestration and takes the two things it needs from Hydra as callables
(compose a job's config, launch jobs), so it is tested without Hydra."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from bench.errors import ConfigError
from bench.measure import metrics
from bench.records.store import TRIAL_ONLY, role, run_seconds, study_key  # noqa: F401  (a run's identity lives with the records; tune.role stays)

MODES = ("grid", "tpe")

FINAL_SETS = ("seed", "train.lr", "validation.examples", "validation.score_on", "selection")  # what a final's overrides set
TRIAL_SETS = FINAL_SETS + ("train.max_steps", "train.stop_after", "train.eval_every", "forgetting.enabled", "inference.enabled", "keep_artifacts",
                          "validation.score")


def lr_grid(tune_cfg: DictConfig, default_lr: float) -> list[float]:
    """tune.lrs as given, else tune.trials learning rates evenly spaced on a log scale from
    default / lr_span to default x lr_span (3 significant digits, so a relaunch hashes the same)."""
    if tune_cfg.get("lrs"):
        return [float(x) for x in tune_cfg.lrs]
    n, span = int(tune_cfg.trials), float(tune_cfg.lr_span)
    low, high = math.log10(default_lr / span), math.log10(default_lr * span)
    return [float(f"{10 ** (low + i * (high - low) / (n - 1)):.3g}") for i in range(n)]


def middle_out(grid: list[float]) -> list[float]:
    """The grid from its middle outwards (1e-4, 3e-4, 3e-5, 1e-3, 1e-5 ...): the method's default,
    usually a fair rate, finishes first, so the pruner can stop the extremes that are clearly worse."""
    order = sorted(grid)
    mid = (len(order) - 1) // 2
    out = [order[mid]]
    for step in range(1, len(order)):
        for i in (mid + step, mid - step):
            if 0 <= i < len(order) and order[i] not in out:
                out.append(order[i])
    return out


def scored_metric(cfg: DictConfig) -> str:
    """What a trial of this config is scored and chosen by: the task's main metric, or "loss" (the
    mean loss per reference token, lower is better) with tune.score=loss (validation.score in the
    trial's own config)."""
    score = (cfg.get("validation") or {}).get("score") if (cfg.get("validation") or {}).get("score_on") == "validation" else None
    if (score or (cfg.get("tune") or {}).get("score")) == "loss":
        return "loss"
    return str(cfg.task.metrics[0])


def check(tune_cfg: DictConfig) -> None:
    """The tuning knobs, before anything launches: the schema's (bench.config.schema), as every run checks them."""
    from bench.config.schema import SCHEMA, check_value

    for key in SCHEMA["tune"]:
        check_value("tune", key, tune_cfg.get(key))


# ---------------------------------------------------------------- the pruner, inside a trial
class MedianPruner:
    """Optuna's MedianPruner for one trial running in its own process: at each periodic validation
    score, the trials of the same point and budget that have finished (from their records) form an
    in-memory study, and the trial is stopped when its score is below their median at that step."""

    def __init__(self, cfg: DictConfig, study: str, metric: str) -> None:
        self.results_dir, self.study, self.metric = Path(cfg.results_dir), study, metric
        self.max_steps, self.startup = int(cfg.train.max_steps), int(cfg.tune.prune_startup_trials)
        self.history: list[tuple[int, float]] = []
        self.pattern = f"*-{cfg.model.name}-{cfg.task.name}-{cfg.method.name}-s*.json"

    def finished_trials(self) -> list[dict[str, Any]]:
        """Records are named <time>-<model>-<task>-<method>-s<seed>-<hash>.json: only this point's
        model, task and method are opened, however many records results_dir holds."""
        if not self.results_dir.is_dir():
            return []
        return [r for r in map(_read, map(str, self.results_dir.glob(self.pattern))) if r is not None
                and r["run"].get("role") == "trial" and r["run"].get("study") == self.study
                and r["run"]["status"] in ("success", "pruned")
                and (r["run"].get("config") or {}).get("train", {}).get("max_steps") == self.max_steps]

    def should_stop(self, step: int, scores: dict[str, Any]) -> str | None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.history.append((step, float(scores[self.metric])))
        finished = self.finished_trials()
        study = optuna.create_study(direction=metrics.direction(self.metric),  # the pruner compares in the metric's direction
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=self.startup, n_warmup_steps=0))
        lr = optuna.distributions.FloatDistribution(1e-12, 1e3, log=True)
        for rec in finished:
            curve = {p["step"]: float(p["eval"][self.metric]) for p in rec.get("curve") or [] if self.metric in (p.get("eval") or {})}
            done = rec["run"]["status"] == "success"
            study.add_trial(optuna.trial.create_trial(
                params={"lr": float(rec["run"]["config"]["train"]["lr"])}, distributions={"lr": lr},
                value=float(rec["quality"][self.metric]) if done else None, intermediate_values=curve,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED))
        trial = study.ask({"lr": lr})
        for s, v in self.history:
            trial.report(v, s)
        if trial.should_prune():
            complete = sum(r["run"]["status"] == "success" for r in finished)
            side = "below" if metrics.higher_is_better(self.metric) else "above"  # the worse side, for this metric
            return f"pruned at step {step}: validation {self.metric} {self.history[-1][1]:.4f} is {side} the median of {complete} finished trials"
        return None


def rungs(tune_cfg: Any, trial_steps: int) -> list[int]:
    """Successive halving's rungs: min_steps x reduction^k below the finals' budget (the steps each
    round of trials trains). min_steps null = trial_steps / reduction^2, rounded up."""
    eta = int(tune_cfg.get("reduction") or 3)
    first = int(tune_cfg.get("min_steps") or math.ceil(trial_steps / eta ** 2))
    out, step = [], first
    while step < trial_steps:
        out.append(step)
        step *= eta
    return out


def pruner_for(cfg: DictConfig, study: str, metric: str) -> MedianPruner | None:
    """The trial's own pruner, or None: successive halving stops its trials by their budget (train.stop_after), not from inside."""
    return None if halving(cfg.tune) else MedianPruner(cfg, study, metric)


def halving(tune_cfg: Any) -> bool:
    """Whether the search is successive halving (tune.pruner=halving with tune.prune on)."""
    return bool(tune_cfg.get("prune")) and str(tune_cfg.get("pruner") or "median") == "halving"


# ---------------------------------------------------------------- choosing, from the trials' records
def _scores(trials: list[dict[str, Any]], metric: str) -> tuple[dict[float, float], list[float], list[float]]:
    """Per learning rate: the mean validation score of its successful trials, the rates whose every
    trial predicted one class (learned only the class prior), and those at or below the majority class."""
    by_lr: dict[float, list[float]] = {}
    constant: dict[float, list[bool]] = {}
    majority: dict[float, list[bool]] = {}
    for rec in trials:
        lr = float(rec["run"]["config"]["train"]["lr"])
        if rec["run"]["status"] == "success" and (rec.get("quality") or {}).get(metric) is not None:
            q = rec["quality"]
            by_lr.setdefault(lr, []).append(float(q[metric]))
            constant.setdefault(lr, []).append(bool(q.get("constant_predictions")))
            base = q.get("majority_baseline")
            majority.setdefault(lr, []).append(base is not None and q.get("accuracy") is not None and float(q["accuracy"]) <= float(base))
    means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
    stuck = sorted(lr for lr, flags in constant.items() if flags and all(flags))
    return means, stuck, sorted(lr for lr, flags in majority.items() if flags and all(flags))


def ranked(trials: list[dict[str, Any]], metric: str, constant_last: bool = True) -> list[float]:
    """The learning rates of these trials, best first: the best mean in the metric's direction
    (bench.measure.metrics); a rate whose every trial predicted one class is ranked after every rate
    that learned anything (a constant answer can tie or beat a poor learner on accuracy, and it is
    no choice); a tie goes to the smaller lr. A rate with no successful trial is not ranked.
    constant_last=False ranks by the score alone: successive halving's promotions below the last
    rung, where a rate may still predict one class because it has not yet left the class prior (a
    loss tells how far it has moved); the choice itself always ranks such a rate last."""
    means, stuck, _ = _scores(trials, metric)
    return sorted(means, key=lambda lr: (constant_last and lr in stuck, -metrics.goodness(metric, means[lr]), lr))


def trained_steps(rec: dict[str, Any]) -> int:
    """The steps a trial trained: its train.stop_after (a successive-halving rung), else its max_steps."""
    train = rec["run"]["config"]["train"]
    return int(train.get("stop_after") or train["max_steps"])


def select(trials: list[dict[str, Any]], metric: str, mode: str, pruner: str = "median") -> dict[str, Any]:
    """The `selection` section of the finals: the learning rate with the best mean validation score
    over its successful trials (a pruned or failed trial is never chosen; with successive halving,
    only the last rung's trials compete), every lr tried with its score at the last step it reached,
    and what the trials cost in run time. chosen_lr is None when no trial succeeded."""
    reached: dict[float, int] = {}
    for rec in trials:
        lr = float(rec["run"]["config"]["train"]["lr"])
        reached[lr] = max(reached.get(lr, 0), trained_steps(rec))
    ok = [r for r in trials if r["run"]["status"] == "success"]
    top = max(map(trained_steps, ok), default=0)
    pool = [r for r in trials if trained_steps(r) == top] if pruner == "halving" else trials  # halving: the last rung competes
    order = ranked(pool, metric)
    chosen = order[0] if order else None
    shown = [r for r in trials if trained_steps(r) == reached[float(r["run"]["config"]["train"]["lr"])]]  # each rate at its last rung
    means, stuck, majority = _scores(shown, metric)
    first = trials[0]["run"]["config"] if trials else {}
    lrs = sorted(reached)
    out = {
        "split": "validation",
        "validation_examples": int((first.get("validation") or {}).get("examples", 0)),
        "metric": metric,
        "mode": mode,
        "trials": len(trials),
        "trial_steps": int((first.get("train") or {}).get("max_steps", 0)),
        "lrs": lrs,
        "scores": [means.get(lr) for lr in lrs],
        "pruned": sum(r["run"]["status"] == "pruned" for r in trials) + (sum(reached[lr] < top for lr in lrs if lr in means) if pruner == "halving" else 0),
        "failed": sum(r["run"]["status"] not in ("success", "pruned") for r in trials),
        "chosen_lr": chosen,
        "constant_lrs": stuck,  # rates whose every trial predicted one class: ranked last
        "majority_lrs": majority,  # no better than the majority class
        "none_learned": bool(means) and all(lr in stuck for lr in means),
        "cost_s": round(sum(run_seconds(r["run"]) or 0.0 for r in trials), 3),
        "trial_ids": sorted(str(r["run"]["id"]) for r in trials),  # which trials chose it: a rerun trial makes a new search
        "pruner": pruner,
        "validation_se": validation_se(pool, metric, chosen),  # the chosen score's standard error at this validation size: the noise
    }
    if pruner == "halving":
        out["reached"] = [reached[lr] for lr in lrs]  # the steps each rate trained: a rate stopped at a lower rung was outranked there
    return out


def validation_se(trials: list[dict[str, Any]], metric: str, lr: float | None) -> float | None:
    """The standard error of the chosen rate's validation score, from its trials' per-example
    predictions or scores (a bootstrap over the validation rows): two rates closer than about twice
    this cannot be told apart on this validation set. None when no such trial kept them."""
    from bench.measure import significance

    mine = [r for r in trials if r["run"]["status"] == "success" and lr is not None and float(r["run"]["config"]["train"]["lr"]) == lr]
    ses = [se for se in (significance.standard_error(r, metric) for r in mine) if se is not None]
    return round(sum(ses) / len(ses), 5) if ses else None


# ---------------------------------------------------------------- the orchestration
def _without(overrides: list[str], keys: tuple[str, ...]) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in keys]


def _value(x: Any) -> str:
    """A Python value as a Hydra override value."""
    if x is None:
        return "null"
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(_value(v) for v in x) + "]"
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, str):
        return f"'{x}'"
    return str(x)


def points_of(jobs: list[list[str]]) -> list[tuple[list[str], list[int]]]:
    """(a point's overrides without the seed, its seeds in sweep order) for every point of the jobs."""
    points: dict[tuple[str, ...], list[int]] = {}
    for job in jobs:
        seeds = [int(o.split("=", 1)[1]) for o in job if o.split("=", 1)[0] == "seed"]
        key = tuple(_without(job, ("seed",)))
        points.setdefault(key, [])
        for s in seeds or [None]:  # type: ignore[list-item]
            if s not in points[key]:
                points[key].append(s)
    return [(list(k), v) for k, v in points.items()]


Compose = Callable[[list[str]], DictConfig]
Launch = Callable[[list[list[str]]], list[str | None]]  # jobs -> each job's record path


def run_tuning(jobs: list[list[str]], compose: Compose, launch: Launch, log: Callable[[str], None] = print,
               finals_out: list[list[str]] | None = None) -> list[str | None]:
    """Trials for every point (in parallel across points, as the launcher allows), then each point's
    finals at its chosen learning rate. Returns every final's record path (finals_out, if given,
    receives the finals' jobs in the same order)."""
    from bench.config.checks import NOT_TRAINING
    from bench.config.checks import check as plain_check

    plans = []
    for overrides, seeds in points_of(jobs):
        set_here = [o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0] in ("train.lr",)]
        if set_here:
            raise ConfigError("train.lr", "set on the command line", "left out with tune.enabled=true: tuning chooses each point's lr")
        seeds = [s for s in seeds if s is not None]
        cfg = compose(overrides + ([f"seed={seeds[0]}"] if seeds else []))
        check(cfg.tune)
        seeds = seeds or [int(cfg.seed)]
        trains = cfg.method.name not in NOT_TRAINING
        steps = int(cfg.tune.max_steps or cfg.train.max_steps)
        every = int(cfg.tune.eval_every or max(1, steps // 4))
        marks: list[int] = []
        if trains and halving(cfg.tune):
            if str(cfg.tune.mode) != "grid":
                raise ConfigError("tune.pruner", "halving", "median with tune.mode=tpe (successive halving runs a grid, rung by rung)")
            marks = rungs(cfg.tune, steps)  # each round of trials trains to its rung (train.stop_after) and is scored there only
            if not marks:
                raise ConfigError("tune.min_steps", cfg.tune.min_steps, f"a number of steps below the trials' {steps} (the first rung of successive halving)")
            every = 0
        base = _without(overrides, FINAL_SETS)
        trial = _without(overrides, TRIAL_SETS) + [f"validation.examples={int(cfg.tune.val_examples)}", "validation.score_on=validation",
                        f"validation.score={cfg.tune.get('score') or 'metric'}",
                        f"train.max_steps={steps}", f"train.eval_every={every}", "forgetting.enabled=false",
                        "inference.enabled=false", "keep_artifacts=false"]
        if trains:  # before any trial starts: the plain checks (torch-free: the held-out rows fit the data), then the model's
            trial_cfg = compose(trial + [f"seed={seeds[0]}", f"train.lr={float(cfg.method.lr)!r}"])
            plain_check(trial_cfg)
            from bench.config.plan import validate

            validate(trial_cfg)
        plans.append({"overrides": overrides, "base": base, "seeds": seeds, "cfg": cfg, "trains": trains, "trial": trial,
                      "trial_seeds": seeds[: int(cfg.tune.trial_seeds)], "rungs": marks, "grid": lr_grid(cfg.tune, float(cfg.method.lr)) if trains else [],
                      "metric": scored_metric(cfg), "records": []})
    tuned = [p for p in plans if p["trains"]]
    mode = str(plans[0]["cfg"].tune.mode) if plans else "grid"
    log(f"tuning: {len(tuned)} points, {mode} search of the learning rate on a validation split carved from train; "
        f"{sum(len(p['grid']) * len(p['trial_seeds']) for p in tuned)} trials, then each point's finals")

    if mode == "grid" and any(p["rungs"] for p in tuned):
        _halving(tuned, launch, log)
    elif mode == "grid":
        # Round by round across points (every point's middle rate, then every point's next ...): with
        # N workers, a point's third rate starts only after its first two had their turn, so the
        # pruner has finished trials to compare against instead of a point's whole grid at once.
        orders = [(p, middle_out(p["grid"])) for p in tuned]
        trial_jobs = [(p, p["trial"] + [f"seed={s}", f"train.lr={order[i]!r}"])
                      for i in range(max((len(o) for _, o in orders), default=0))
                      for p, order in orders if i < len(order) for s in p["trial_seeds"]]
        paths = _launch_until_decided([job for _, job in trial_jobs], launch, max_attempts(tuned), log)
        for (p, _), path in zip(trial_jobs, paths):
            p["records"].append(path)
    else:
        _tpe(tuned, launch)

    final_jobs: list[list[str]] = []
    for p in plans:
        if not p["trains"]:  # nothing to tune (method=none): the point runs as it is
            final_jobs += [p["overrides"] + [f"seed={s}"] for s in p["seeds"]]
            continue
        records = [_read(path) for path in p["records"]]
        selection = select([r for r in records if r is not None], p["metric"], mode, str(p["cfg"].tune.get("pruner") or "median"))
        if selection["chosen_lr"] is None:  # every trial pruned, diverged or failed: their rows say why
            log(f"tuning: {_label(p['base'])}: no trial succeeded ({selection['pruned']} pruned, {selection['failed']} failed); "
                f"no finals run for this point: widen or move the range (tune.lr_span, tune.lrs)")
            continue
        lr = selection["chosen_lr"]
        flags = ""
        if selection["constant_lrs"]:
            flags += f"; constant predictions (one class for every row) at lr {', '.join(f'{x:g}' for x in selection['constant_lrs'])}: ranked last"
        if selection["majority_lrs"]:
            flags += f"; at or below the majority class at lr {', '.join(f'{x:g}' for x in selection['majority_lrs'])}"
        if selection["none_learned"]:
            flags += "; NO trial learned beyond the class prior: its finals will not either (move tune.lrs or train longer)"
        noise = f", standard error {selection['validation_se']:.4f}" if selection["validation_se"] is not None else ""
        log(f"tuning: {_label(p['base'])}: chose lr {lr:g} from {selection['lrs']} "
            f"({selection['metric']} on {selection['validation_examples']} validation rows{noise}; trials took {selection['cost_s']:.0f} s){flags}")
        selection_override = "selection={" + ",".join(f"{k}:{_value(v)}" for k, v in selection.items()) + "}"
        final_jobs += [p["base"] + [f"validation.examples={int(p['cfg'].tune.val_examples)}", f"train.lr={lr!r}",
                                    f"seed={s}", selection_override] for s in p["seeds"]]
    if finals_out is not None:
        finals_out.extend(final_jobs)
    return launch(final_jobs)


def _launch_until_decided(jobs: list[list[str]], launch: Launch, attempts: int, log: Callable[[str], None]) -> list[str | None]:
    """Launch trials; a trial killed outright (kill -9, the OOM killer) is launched again, up to the
    sweep's max_attempts, before anything is chosen from them."""
    paths = launch(jobs)
    for _ in range(attempts - 1):
        again = [i for i, path in enumerate(paths) if _killed(_read(path))]
        if not again:
            break
        log(f"tuning: {len(again)} trial(s) killed before their verdict; running them again before choosing")
        for i, path in zip(again, launch([jobs[i] for i in again])):
            paths[i] = path
    return paths


def _halving(plans: list[dict[str, Any]], launch: Launch, log: Callable[[str], None]) -> None:
    """Successive halving, one rung at a time across every point (so a launcher runs a rung's trials
    side by side): each point's surviving rates train to the rung's steps on the finals' schedule;
    the best 1/reduction of them (at least two) go on to the next rung, until one is left or the
    last rung is scored. Every trial is an ordinary record, so a relaunch skips what ran and makes
    the same cuts."""
    alive = {id(p): list(p["grid"]) for p in plans}
    for k in range(max(len(p["rungs"]) for p in plans)):
        now = [p for p in plans if k < len(p["rungs"]) and (k == 0 or len(alive[id(p)]) > 1)]
        if not now:
            break
        jobs = [(p, p["trial"] + [f"seed={s}", f"train.lr={lr!r}", f"train.stop_after={p['rungs'][k]}"])
                for p in now for lr in alive[id(p)] for s in p["trial_seeds"]]
        log(f"tuning: rung {k}: {len(jobs)} trials of {', '.join(sorted({str(p['rungs'][k]) for p in now}))} steps")
        paths = _launch_until_decided([job for _, job in jobs], launch, max_attempts(plans), log)
        for p in now:
            mine = [path for (q, _), path in zip(jobs, paths) if q is p]
            p["records"] += mine
            last = k + 1 == len(p["rungs"])
            order = ranked([r for r in map(_read, mine) if r is not None], p["metric"], constant_last=last)  # promotions: by the score alone
            keep = max(2, len(order) // int(p["cfg"].tune.reduction))
            alive[id(p)] = order[:1] if last else order[:keep]
            if k + 1 < len(p["rungs"]) and len(alive[id(p)]) > 1:
                log(f"tuning: {_label(p['base'])}: lr {', '.join(f'{x:g}' for x in alive[id(p)])} go on to step {p['rungs'][k + 1]}")


def max_attempts(plans: list[dict[str, Any]]) -> int:
    """How often a point may fail before a relaunch skips it (the sweep's max_attempts, default 3)."""
    return int(plans[0]["cfg"].get("max_attempts") or 3) if plans else 1


def _killed(rec: dict[str, Any] | None) -> bool:
    """A trial that ended without a verdict on its rate: killed outright (oom: SIGKILL) or its process
    died; a diverged or pruned trial, or a config refusal, is a verdict and never retried."""
    if rec is None:
        return True
    run = rec["run"]
    return run["status"] == "oom" or (run["status"] == "failed" and str(run.get("error") or "").startswith("run process"))


def _label(overrides: list[str]) -> str:
    """A point's own overrides, without where-it-goes keys."""
    where = ("experiment", "data_root", "results_dir", "tracking", "keep_artifacts", "force", "cache_data", "hydra", "tune")
    return " ".join(o for o in overrides if o.split("=", 1)[0].split(".")[0].lstrip("+~") not in where) or "(defaults)"


def _tpe(plans: list[dict[str, Any]], launch: Launch) -> None:
    """tune.trials rounds; each round asks every point's study for one learning rate and launches
    them together. The sampler is seeded and told results in a fixed order, so a relaunch asks the
    same rates and finds their records."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for p in plans:
        low, high = min(p["grid"]), max(p["grid"])
        p["dist"] = optuna.distributions.FloatDistribution(low, high, log=True)
        p["study"] = optuna.create_study(direction=metrics.direction(p["metric"]), sampler=optuna.samplers.TPESampler(
            seed=int(p["cfg"].tune.sampler_seed), n_startup_trials=min(3, int(p["cfg"].tune.trials))))
    for _ in range(int(plans[0]["cfg"].tune.trials) if plans else 0):
        asked = []
        for p in plans:
            trial = p["study"].ask({"lr": p["dist"]})
            lr = float(f"{trial.params['lr']:.3g}")
            asked += [(p, trial, lr, p["trial"] + [f"seed={s}", f"train.lr={lr!r}"]) for s in p["trial_seeds"]]
        paths = launch([job for *_, job in asked])
        for (p, trial, lr, _), path in zip(asked, paths):
            p["records"].append(path)
        for p in plans:  # tell each asked trial once, with the mean of its seeds
            for trial in {id(t): t for q, t, *_ in asked if q is p}.values():
                mine = [_read(path) for (q, t, _, _), path in zip(asked, paths) if t is trial]
                ok = [float(r["quality"][p["metric"]]) for r in mine if r and r["run"]["status"] == "success"]
                if ok:
                    p["study"].tell(trial, sum(ok) / len(ok))
                else:
                    pruned = any(r and r["run"]["status"] == "pruned" for r in mine)
                    p["study"].tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL)


def _read(path: str | None) -> dict[str, Any] | None:
    import json

    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("run"), dict) else None
    except (OSError, ValueError):
        print(f"tuning: could not read the record {path}", file=sys.stderr)
        return None
