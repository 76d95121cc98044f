"""``mlcompare tune``: the same hyperparameter search for every method, then its best setting tested.

The protocol of "A Metric Learning Reality Check" (Musgrave, Belongie, Lim 2020) on our open-set split:

1. The test identities are set aside first (:func:`mlcompare.run.runner.open_session`); tuning never
   embeds a test image.
2. The training identities are split, seeded, into ``folds`` identity-disjoint folds. A trial trains
   on K-1 folds and is scored on the held-out fold's identities, for each fold; its objective is the
   mean over folds of one ``results.csv`` score (``[tuning] objective``, default MAP@R).
3. Equal budget: every method gets the same number of trials, steps per trial and folds; its first
   trial is the comparison's own setting, so "default" is always scored on the same folds.
4. Optuna's TPE sampler, seeded per trial from (seed, method, trial index): the sampled setting is a
   function of the completed trials only, so an interrupted study resumed samples what an
   uninterrupted one would have (an interrupted trial is rerun with its parameters). With ``prune``,
   Optuna's median pruner stops a trial whose first folds score below the median of completed trials
   at the same fold (pruned trials count); with ``multifidelity``, successive halving or Hyperband
   prunes on the objective measured every ``eval_every`` steps and the budget is in training steps
   (:mod:`mlcompare.tune.budget`).
6. Workers: any number, here (``jobs``, :mod:`mlcompare.tune.workers`) or elsewhere (:func:`join`),
   run trials of the same studies (:mod:`mlcompare.tune.study`, :mod:`mlcompare.tune.storage`);
   each trial claims its place in the budget by its number, and a lost worker's trial is rerun
   (:mod:`mlcompare.tune.heartbeat`).
5. Final phase: each method's default and tuned settings retrained on all training identities for
   ``seeds`` seeds and scored on the test set (``setting`` column); optionally the best trial's K
   fold models, L2-normalised and concatenated, as one more row (MLRC's "concatenated" embedding).

Run directory: the usual files plus ``tuning/study.db`` (the Optuna studies, SQLite, unless another
storage is given; one study per method), ``tuning/storage.json``, ``tuning/trials.csv`` (one row per trial),
``tuning/space.json`` (each method's searched ranges, which the report checks the chosen values against) and,
with ``ensemble``, ``tuning/ensemble/``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlcompare import losses
from mlcompare.backbones import build_backbone, embed
from mlcompare.config.comparison import ComparisonConfig, MethodConfig
from mlcompare.config.names import RAW_PIXELS, check_distinct, slug
from mlcompare.config.results_schema import ResultRow
from mlcompare.config.search_space import Dim, at_edges, override
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.run import runner
from mlcompare.run.rundir import write_csv_atomic
from mlcompare.run.scoring import TestProtocol, score
from mlcompare.train import distributed
from mlcompare.train.trainer import LOSS_LR_SEARCH, SEARCH_SPACE, save_atomic
from mlcompare.tune import workers
from mlcompare.tune import budget as tune_budget
from mlcompare.tune import heartbeat as trial_heartbeat
from mlcompare.tune import storage as study_storage
from mlcompare.tune import study as tune_study

TRAIN_KEYS = ("lr", "weight_decay", "loss_lr")  # dimensions that belong to the train section


def _optuna():
    try:
        import optuna
    except ImportError as err:  # a declared dependency: only a broken install gets here
        raise UserError("mlcompare tune needs Optuna: pip install optuna (a dependency of mlcompare)") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # ask/tell with a heartbeat: we record the heartbeat ourselves (trial_heartbeat.beating), as optimize would
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return optuna


# ----------------------------------------------------------------------------- folds


def identity_folds(num_identities: int, folds: int, *, seed: int) -> list[torch.Tensor]:
    """``folds`` disjoint sets of identity indices covering ``0 .. num_identities - 1`` once, seeded.

    >>> [f.tolist() for f in identity_folds(5, 2, seed=0)]
    [[0, 1, 4], [2, 3]]
    """
    if folds < 2 or folds > num_identities // 2:
        raise UserError(f"tuning.folds = {folds} needs 2 <= folds <= {num_identities // 2} (two identities per fold "
                        f"at least, the training set has {num_identities}); lower it, e.g. --folds 2")
    order = torch.randperm(num_identities, generator=torch.Generator().manual_seed(seed))
    return [torch.sort(part).values for part in torch.tensor_split(order, folds)]


def check_folds(train_set: FaceData, config: ComparisonConfig) -> None:
    """Every fold leaves each method enough identities to train on (P per batch) and to validate on,
    and has enough impostor pairs to measure a ``tar_far_X`` objective (one false accept at X)."""
    t = config.tuning
    folds = identity_folds(train_set.num_identities, t.folds, seed=t.seed)
    if t.objective.startswith("tar_far_"):
        far = float(t.objective.removeprefix("tar_far_"))
        for i, identities in enumerate(folds):
            labels = train_set.labels[torch.isin(train_set.labels, identities.to(train_set.labels.device))].cpu()
            impostors = int((~TestProtocol.build(labels, pairs=config.data.verification_pairs, seed=t.seed).pairs.same).sum())
            if impostors * far < 1:
                raise UserError(f"tuning.objective = {t.objective} needs {math.ceil(1 / far)} impostor pairs per "
                                f"validation fold, and fold {i + 1} has {impostors}; raise data.verification_pairs, "
                                "use fewer --folds or more identities, or another objective (e.g. map_at_r)")
    left = train_set.num_identities - max(len(f) for f in folds)
    for method in config.methods:
        p = runner.method_batch(config, method).p
        if p > left:
            raise UserError(f"method '{method.name}': with {config.tuning.folds} folds a trial trains on {left} "
                            f"identities, fewer than p={p} per batch; use fewer folds (--folds) or a smaller p "
                            f"(--set train.p={max(2, left)})")


@dataclass
class Fold:
    """One fold's training images (the other folds' identities) and validation protocol."""

    train: FaceData
    validation: FaceData
    protocol: TestProtocol


def make_folds(train_set: FaceData, config: ComparisonConfig, *, progress: bool = True) -> list[Fold]:
    t = config.tuning
    out = []
    for identities in identity_folds(train_set.num_identities, t.folds, seed=t.seed):
        held = torch.isin(train_set.labels, identities.to(train_set.labels.device))
        validation = train_set.subset(torch.nonzero(held).squeeze(1)).in_memory(progress=progress).to("cpu")
        protocol = TestProtocol.build(validation.labels, pairs=config.data.verification_pairs, seed=t.seed)
        out.append(Fold(train_set.subset(torch.nonzero(~held).squeeze(1)), validation, protocol))
    return out


# ----------------------------------------------------------------------------- search spaces


@dataclass
class Space:
    """What a method's trials sample (``dims``) and hold fixed (``fixed``), and its own setting."""

    dims: dict[str, Dim]
    fixed: dict[str, Any]
    defaults: dict[str, Any]


def method_space(config: ComparisonConfig, method: MethodConfig, *, has_head: bool) -> Space:
    """The trainer's and the loss's declared dimensions, with ``[methods.search]`` applied. Each
    range is widened to hold the comparison's own value, which is the method's first trial."""
    where = f"method '{method.name}'"
    registered = losses.REGISTRY.get(method.loss)  # None: a pml: loss, which declares no search space
    loss_defaults = losses.defaults(method.loss) if registered else {}
    loss_params = losses.parameters(method.loss)
    defaults: dict[str, Any] = {"lr": config.train.lr, "weight_decay": config.train.weight_decay}
    declared: dict[str, Dim] = dict(SEARCH_SPACE)
    if has_head:
        defaults["loss_lr"] = config.train.loss_lr or config.train.lr
        declared["loss_lr"] = LOSS_LR_SEARCH
    for name, dim in (registered.search_space if registered else {}).items():
        declared[name] = dim
        defaults[name] = method.params.get(name, loss_defaults[name])
    dims, fixed = dict(declared), {}
    for name, value in method.search.items():
        if name not in declared and name not in loss_params and name not in TRAIN_KEYS:
            valid = sorted(set(TRAIN_KEYS[:2] + (("loss_lr",) if has_head else ())) | set(loss_params))
            raise UserError(f"{where}: search.{name} is not a parameter of loss '{method.loss}' or of the trainer; "
                            f"valid: {', '.join(valid)}")
        if name == "loss_lr" and not has_head:
            raise UserError(f"{where}: search.loss_lr: loss '{method.loss}' has no parameters of its own")
        if name not in defaults:
            defaults[name] = method.params.get(name, loss_defaults.get(name))
        found = override(name, value, declared.get(name), where=where)
        if isinstance(found, Dim):
            dims[name] = found
        else:
            fixed[name] = found
            dims.pop(name, None)
    for name, dim in dims.items():
        default = defaults.get(name)
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise UserError(f"{where}: search.{name}: its setting {default!r} is not a number; fix it with search.{name} = VALUE")
        dims[name] = dim.including(float(default))
    return Space(dims, fixed, defaults)


def apply_setting(config: ComparisonConfig, method: MethodConfig, values: dict[str, Any], *, name: str
                  ) -> tuple[ComparisonConfig, MethodConfig]:
    """``config`` and ``method`` with a sampled or chosen setting (train keys into the train section)."""
    train = {k: v for k, v in values.items() if k in TRAIN_KEYS}
    params = {k: v for k, v in values.items() if k not in TRAIN_KEYS}
    return (dataclasses.replace(config, train=dataclasses.replace(config.train, **train)),
            dataclasses.replace(method, name=name, params=method.params | params))


def setting_text(method: MethodConfig, values: dict[str, Any]) -> str:
    """The params column of a tuned row: the loss's parameters then the trainer's, as tuned."""
    train = " ".join(f"{k}={_short(v)}" for k, v in values.items() if k in TRAIN_KEYS)
    return " ".join(filter(None, [runner.params_text(method), train]))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- the study


class TrialFailed(Exception):
    """A trial that cannot be scored (a diverged model, a sampled parameter its loss rejects)."""


class _Pruned(Exception):
    """Raised from the trainer's log hook when the multi-fidelity pruner stops a trial mid-fold."""


def pruner(config: ComparisonConfig) -> Any:
    """The study's pruner: median over folds (``prune``), successive halving or Hyperband on the
    objective measured every ``eval_every`` training steps (``multifidelity``; steps counted over folds)."""
    optuna = _optuna()
    t = config.tuning
    if t.multifidelity == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=t.eval_every, reduction_factor=3)
    if t.multifidelity == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=t.eval_every, max_resource=t.folds * config.train.steps,
                                              reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=2)


def budget(config: ComparisonConfig) -> tune_budget.Budget:
    """Each method's budget: ``trials`` trials, or with multi-fidelity as many training steps as they would train."""
    t = config.tuning
    if t.multifidelity == "off":
        return tune_budget.Budget(t.trials, 1, "trials")
    full = t.folds * config.train.steps
    return tune_budget.Budget(t.trials * full, full, "steps")


@dataclass
class Tuner:
    """Runs trials of the method studies on the folds, as one worker (``worker``, on this host)."""

    config: ComparisonConfig
    device: torch.device
    folds: list[Fold]
    best_dir: Path | None
    worker: str
    storage: Any  # the Optuna storage the studies were opened on (by tune_study, from study_storage.open_storage)

    def run_trial(self, method_index: int, method: MethodConfig, space: Space, study) -> None:
        """Ask ``study`` for a trial (a waiting retry first) and run it if the budget has its place."""
        trial = study.ask()
        with trial_heartbeat.beating(self.storage, trial._trial_id, self.config.tuning.heartbeat):
            try:
                self._run(method_index, method, space, study, trial)
            except BaseException:  # interrupted or a bug: the trial is run again, with the same parameters
                trial_heartbeat.abandon(study, self.storage, trial._trial_id)
                raise

    def _run(self, method_index: int, method: MethodConfig, space: Space, study, trial) -> None:
        optuna = _optuna()
        config = self.config
        t = config.tuning
        plan = budget(config)
        trials = study.get_trials(deepcopy=False)
        index = tune_budget.index(plan, trials, next(x for x in trials if x.number == trial.number))
        if index is None:  # another worker took the last place first
            trial.set_user_attr(tune_budget.OVER_BUDGET, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        seed = int(np.random.SeedSequence([t.seed, method_index, index]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials)
        for key, value in (("index", index), ("worker", self.worker), ("host", socket.gethostname())):
            trial.set_user_attr(key, value)
        tic = time.perf_counter()
        scores: list[float] = []
        models: list[torch.nn.Module] = []
        steps = config.train.steps
        spent = {"steps": 0}

        def finish(state, message: str = "", value: float | None = None) -> None:
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("seconds", time.perf_counter() - tic)
            trial.set_user_attr("steps", spent["steps"])
            if message:
                trial.set_user_attr("message", message)
            study.tell(trial, value, state=state)

        try:
            values = {name: dim.suggest(trial, name) for name, dim in space.dims.items()} | space.fixed
            cfg, m = apply_setting(config, method, values, name=method.name)
            # without multi-fidelity a trial is scored on its fold once, at the end: no validation curve
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_every=t.eval_every
                                                                      if t.multifidelity != "off" else 0))
            try:
                with torch.device("meta"):
                    runner.build_loss(m, num_classes=2, embedding_dim=4, class_counts=TOY_COUNTS)
            except UserError as err:
                raise TrialFailed(str(err)) from err
            for f, fold in enumerate(self.folds):
                spent["steps"] = f * steps + steps  # a fold that fails or diverges costs its steps
                result = runner.train_and_score(cfg, m, t.seed, fold.train, fold.validation, fold.protocol, self.device,
                                                checkpoint=None, resume=False, progress=False,
                                                **self._fidelity(trial, fold, f, spent))
                value = result.row.metrics.get(t.objective)
                value = math.nan if value is None else value  # None: not measurable on this fold
                if result.row.status != "ok" or not math.isfinite(value):
                    raise TrialFailed(result.row.message or f"{t.objective} is {value}")
                scores.append(float(value))
                models.append(result.model)
                if t.multifidelity != "off":
                    continue
                trial.report(float(value), f)
                if t.prune and f + 1 < len(self.folds) and trial.should_prune():
                    finish(optuna.trial.TrialState.PRUNED)
                    return
        except _Pruned:
            finish(optuna.trial.TrialState.PRUNED)
            return
        except TrialFailed as err:
            finish(optuna.trial.TrialState.FAIL, str(err))
            print(f"{method.name} trial {index} failed: {err}; the search goes on", file=sys.stderr)
            return
        mean = float(np.mean(scores))
        best_before = _best_value(study)
        finish(optuna.trial.TrialState.COMPLETE, value=mean)
        if self.best_dir is not None and (best_before is None or mean > best_before):
            for f, model in enumerate(models):  # the best trial's fold models, for the ensemble row
                save_atomic({"model": model.state_dict()}, self.best_dir / f"{slug(method.name)}-fold{f}.pt")

    def _fidelity(self, trial, fold: Fold, f: int, spent: dict[str, int]) -> dict[str, Any]:
        """With multi-fidelity: the objective on the held-out fold every ``eval_every`` steps, reported
        at the step counted over folds, and the pruner asked each time."""
        t = self.config.tuning
        if t.multifidelity == "off":
            return {}
        precision = self.config.train.precision

        def objective(model: torch.nn.Module) -> float:
            emb = runner.embed(model, fold.validation.images, device=self.device, precision=precision)
            return float(score(emb, fold.protocol)[0][t.objective])

        def on_log(row: dict[str, Any]) -> None:
            if "val_accuracy" not in row:  # the trainer's name for the held-out score (here the objective)
                return
            step = f * self.config.train.steps + row["step"] + 1
            spent["steps"] = step
            trial.report(row["val_accuracy"], step)
            if step < len(self.folds) * self.config.train.steps and trial.should_prune():
                raise _Pruned

        return {"validate": objective, "on_log": on_log}


def _best_value(study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


def work(tuner: Tuner, studies: dict[str, Any], spaces: dict[str, Space], *, after_trial=None) -> int:
    """Run trials, method by method, until every method's budget is spent; wait while other workers'
    trials may still come back (a lost worker's trial is rerun here). The number of trials run."""
    _optuna()
    plan, ran = budget(tuner.config), 0
    while True:
        busy = False
        for i, method in enumerate(tuner.config.methods):
            study = studies[method.name]
            trial_heartbeat.fail_stale(study, tuner.storage, interval=tuner.config.tuning.heartbeat)
            trials = study.get_trials(deepcopy=False)
            if tune_budget.has_room(plan, trials):
                tuner.run_trial(i, method, spaces[method.name], study)
                ran += 1
                if after_trial is not None:
                    after_trial()
                break
            busy = busy or tune_budget.running(trials)
        else:
            if not busy:
                return ran
            time.sleep(tuner.config.tuning.heartbeat)


def trials_table(studies: dict[str, Any], folds: int) -> pd.DataFrame:
    """``trials.csv``: method, trial index, parameters (JSON), the score on each fold, their mean,
    state (complete / pruned / failed), seconds and message, in trial order per method; then which
    worker ran it on which host, and the training steps it spent."""
    rows = []
    for method, study in studies.items():
        for t in sorted(tune_budget.counted(study.get_trials(deepcopy=False)), key=lambda t: t.user_attrs.get("index", -1)):
            if t.state.name in ("RUNNING", "WAITING"):
                continue
            scores = list(t.user_attrs.get("fold_scores", []))
            row = {"method": method, "trial": t.user_attrs.get("index", t.number),
                   "params": json.dumps(t.params, sort_keys=True)}
            row |= {f"fold_{f}": scores[f] if f < len(scores) else math.nan for f in range(folds)}
            row |= {"mean": t.value if t.state.name == "COMPLETE" else (float(np.mean(scores)) if scores else math.nan),
                    "state": {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[t.state.name],
                    "seconds": t.user_attrs.get("seconds", math.nan), "message": t.user_attrs.get("message", ""),
                    "worker": t.user_attrs.get("worker", ""), "host": t.user_attrs.get("host", ""),
                    "steps": t.user_attrs.get("steps", math.nan)}
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the command


def tune(config: ComparisonConfig, out: Path, *, device: str = "auto", force: bool = False, resume: bool = False,
         progress: bool = True, command: str | None = None, storage: str | None = None, study: str | None = None,
         jobs: int = 1, render: Callable[[Path], Any] | None = None) -> Path:
    """Tune every method of ``config`` on identity-disjoint folds of its training identities, then
    retrain each method's default and best settings over ``config.seeds`` seeds and score them on
    the test set; write the run directory (``tuning/`` included) and, with ``render(run_dir)``, its report.

    ``storage``: an Optuna storage URL (default SQLite in the run directory); ``study``: the tune's
    name there (default the run directory's name; with the default storage, none); ``jobs``: local
    worker processes (this one and ``jobs - 1`` more), each with ``cores // jobs`` threads. Workers
    elsewhere join with :func:`join`. The final phase runs here once every trial is done."""
    _optuna()
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give 1 or more local worker processes")
    if distributed.from_env(torch.device("cpu")).active:
        raise UserError("mlcompare tune runs in one process; start it without torchrun")
    if config.crossval.benchmark:  # tune holds out folds of its own; it has no fold loop over a benchmark's splits
        raise UserError(f"mlcompare tune does not cross-validate over [crossval] benchmark '{config.crossval.benchmark}'; "
                        "tune on a comparison without [crossval], then run the tuned settings with it")
    spaces = check_search(config)  # before the run directory exists: a bad search leaves nothing
    if resume:
        check_study(out)
    session = runner.open_session(config, out, device=device, force=force, resume=resume,
                                  check=lambda train_set: check_folds(train_set, config), progress=progress,
                                  command=command)
    folds = make_folds(session.train_set, config, progress=progress)
    tuning_dir = session.rundir.path / "tuning"
    best_dir = tuning_dir / "ensemble" if config.tuning.ensemble else None
    for d in filter(None, (tuning_dir, best_dir)):
        d.mkdir(parents=True, exist_ok=True)
    url = storage or study_storage.default_url(tuning_dir)
    name = study if study is not None else ("" if storage is None else session.rundir.final.name)
    opened = study_storage.open_storage(url, heartbeat=config.tuning.heartbeat)
    study_storage.record(tuning_dir, url, name)
    (tuning_dir / "space.json").write_text(json.dumps(
        {name: {k: dataclasses.asdict(d) for k, d in space.dims.items()} for name, space in spaces.items()}, indent=2))
    first = {m.name: {k: spaces[m.name].defaults[k] for k in spaces[m.name].dims} for m in config.methods}
    studies, _ = tune_study.create_once(opened, name, tune_study.fingerprint(config, session.train_set), first,
                                        pruner=pruner(config))
    plan = budget(config)
    total = len(config.methods) * plan.total
    bar = tqdm(total=total, unit=plan.unit, desc="tuning", disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def after_trial() -> None:
        write_csv_atomic(tuning_dir / "trials.csv", trials_table(studies, config.tuning.folds))
        done = sum(tune_budget.spent(plan, [t for t in s.get_trials(deepcopy=False) if t.state.is_finished()])
                   for s in studies.values())
        bar.update(done - bar.n)

    after_trial()
    with workers.local_workers(jobs, join, config, url, name, device=device, best_dir=best_dir):
        work(Tuner(config, session.device, folds, best_dir, worker="w0", storage=opened), studies, spaces, after_trial=after_trial)
    bar.close()
    write_csv_atomic(tuning_dir / "trials.csv", trials_table(studies, config.tuning.folds))
    entries = []
    for method in config.methods:
        entries.append(runner.Entry(config, method, {"setting": "default"}))
        best = _best_trial(studies[method.name])
        if best is None:
            warnings.warn(f"{method.name}: no trial completed, so there is no tuned setting to retrain", stacklevel=2)
            continue
        values = best.params | spaces[method.name].fixed
        cfg, tuned = apply_setting(config, method, values, name=f"{method.name}-tuned")
        tuned = dataclasses.replace(tuned, group=method.group or method.name)
        entries.append(runner.Entry(cfg, tuned, {"setting": "tuned", "params": setting_text(tuned, values),
                                                 "validation": float(best.value)}))
    for entry in entries:
        if entry.extra["setting"] == "default":
            first_trial = [t for t in tune_budget.counted(studies[entry.method.name].get_trials(deepcopy=False))
                           if t.user_attrs.get("index") == 0]
            entry.extra["validation"] = (float(first_trial[0].value) if first_trial and first_trial[0].value is not None
                                         else math.nan)
    runner.train_entries(session, entries, resume=resume, progress=progress)
    if best_dir is not None:
        for method in config.methods:
            if not session.records.done(f"{method.name}-ensemble", 0):
                session.records.write(ensemble_result(session, method, best_dir))
    done = runner.close_session(session, render)
    for line in edge_warnings(studies, spaces):  # last, where they are read (the report marks them too)
        warnings.warn(line, stacklevel=2)
    return done


def edge_warnings(studies: dict[str, Any], spaces: dict[str, Space]) -> list[str]:
    """One line per method whose best trial chose a value at an edge of its searched range."""
    lines = []
    for method, study in studies.items():
        best = _best_trial(study)
        edges = at_edges(best.params, spaces[method].dims) if best is not None else {}
        if edges:
            found = "; ".join(f"{k}={_short(best.params[k])} at the {where}" for k, where in edges.items())
            lines.append(f"{method}: the tuned {found}: the best setting may lie beyond the range; widen "
                         f"[methods.search] (e.g. search.{next(iter(edges))} = [LOW, HIGH]) and tune again")
    return lines


def check_search(config: ComparisonConfig) -> dict[str, Space]:
    """Every method's search space, once every ``[methods.search]`` entry is known to be usable: its
    name, its range, and the loss built at each fixed value and at both ends of every range (a value
    the loss rejects would otherwise fail every trial). Also refuses tuned and ensemble rows whose
    names would share files with another method's."""
    check_distinct([(RAW_PIXELS, f"the baseline '{RAW_PIXELS}'"), *((f"{m.name}{suffix}", f"{what} '{m.name}{suffix}'")
                    for m in config.methods for suffix, what in (("", "method"), ("-tuned", "the tuned row"),
                                                                 ("-ensemble", "the ensemble row")))], "tune")
    spaces = {}
    for method in config.methods:
        space = spaces[method.name] = method_space(config, method, has_head=_has_head(method))
        fixed_and_searched = sorted(set(method.train) & set(space.dims))
        if fixed_and_searched:  # the method's own value would silently replace every sampled one
            raise UserError(f"method '{method.name}' sets train.{fixed_and_searched[0]} for itself, which tune searches; "
                            f"remove it from the method's train table, or fix it in [methods.search] instead")
        for end in ("low", "high"):
            values = {name: getattr(dim, end) for name, dim in space.dims.items()} | space.fixed
            values = {k: int(v) if k in space.dims and space.dims[k].integer else v for k, v in values.items()}
            _, m = apply_setting(config, method, values, name=method.name)
            try:
                with torch.device("meta"):
                    runner.build_loss(m, num_classes=2, embedding_dim=4, class_counts=TOY_COUNTS)
            except UserError as err:
                setting = ", ".join(f"{k} = {values[k]!r}" for k in values if k not in TRAIN_KEYS)
                raise UserError(f"[methods.search] of '{method.name}' gives the loss a value it rejects "
                                f"({err}; at {setting}); fix or narrow that search entry") from None
    return spaces


def check_study(out: Path) -> None:
    """``tune --resume`` continues a tune run whose study is readable: one line otherwise."""
    import sqlite3

    db = out / "tuning" / "study.db"
    if (out / "config.json").is_file() and not (out / "tuning").is_dir():
        raise UserError(f"tune --resume: '{out}' was made by `mlcompare run` (no tuning/ folder); continue it with "
                        "`mlcompare run --resume`, or give tune another --out")
    if not db.is_file():
        return  # an interrupted tune that had not begun its study, or no run at all: RunDir says which
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        connection.execute("select count(*) from sqlite_master").fetchone()
        if connection.execute("pragma quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("its integrity check failed")
    except sqlite3.DatabaseError as err:
        raise UserError(f"tune --resume: '{db}' is not a readable Optuna study ({err}); restore it, or start "
                        "the tuning again with --force") from None
    finally:
        connection.close()


def join(config: ComparisonConfig, run_dir: Path | None, *, device: str = "auto", storage: str | None = None,
         study: str | None = None, worker: str | None = None, best_dir: Path | None = None) -> int:
    """Run trials of a tune started elsewhere (``run_dir``'s ``tuning/storage.json``, or ``storage``
    and ``study``) until every method's budget is spent; nothing is written but the study. A
    comparison or data other than the study's is refused. The number of trials this worker ran."""
    _optuna()
    if run_dir is not None:
        recorded_url, recorded_study = study_storage.recorded(run_dir)
        storage, study = storage or recorded_url, recorded_study if study is None else study
    if storage is None or study is None:
        raise UserError("a worker joins a tune: give --join RUN_DIR (of the tune), or --storage URL and --study NAME")
    spaces = check_search(config)
    dev = runner.resolve_device(device)
    runner.check_precision(config.train.precision, dev)
    train_set, _, _ = runner.prepare_data(config, dev)
    runner.check_methods(config, train_set, distributed.Context())
    check_folds(train_set, config)
    opened = study_storage.open_storage(storage, heartbeat=config.tuning.heartbeat)
    studies = tune_study.join(opened, study, tune_study.fingerprint(config, train_set),
                              [m.name for m in config.methods], pruner=pruner(config))
    tuner = Tuner(config, dev, make_folds(train_set, config), best_dir, worker=worker or f"join-{os.getpid()}",
                  storage=opened)
    return work(tuner, studies, spaces)


# the toy-sized builds below only check a setting; a loss that needs class counts gets two classes' worth
TOY_COUNTS = torch.tensor([2, 2])


def _has_head(method: MethodConfig) -> bool:
    with torch.device("meta"):
        return bool(runner.build_loss(method, num_classes=2, embedding_dim=4, class_counts=TOY_COUNTS).head_parameters())


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:
        return None


def ensemble_embeddings(models: list[torch.nn.Module], images: torch.Tensor, *, device: torch.device,
                        precision: str = "fp32") -> torch.Tensor:
    """``[N, K * D]``: each model's embeddings L2-normalised, concatenated (MLRC's "concatenated")."""
    return torch.cat([F.normalize(embed(m, images, device=device, precision=precision), dim=1) for m in models], dim=1)


def ensemble_result(session: runner.Session, method: MethodConfig, best_dir: Path) -> runner.MethodResult:
    """The best trial's fold models as one more row of results.csv (seed 0, setting ``ensemble``)."""
    from mlcompare.files.checkpoints import load_checkpoint

    config = session.config
    paths = sorted(best_dir.glob(f"{slug(method.name)}-fold*.pt"))
    row = ResultRow(f"{method.name}-ensemble", method.group or method.name, 0, method.loss,
                    losses.family(method.loss, method.family), train_seconds=math.nan, images_per_s=math.nan,
                    steps=config.train.steps, setup={"params": f"{len(paths)} fold models"}, extra={"setting": "ensemble"})
    if not paths:
        return runner.MethodResult(dataclasses.replace(row, status="failed", message="no completed trial: no fold models"))
    models = []
    for path in paths:
        model = build_backbone(config.backbone, image_size=config.data.size,
                               embedding_dim=method.embedding_dim or config.backbone.embedding_dim)
        model.load_state_dict(load_checkpoint(path, map_location="cpu")["model"])
        models.append(model.to(session.device, memory_format=torch.channels_last))
    emb = ensemble_embeddings(models, session.test_set.images, device=session.device, precision=config.train.precision)
    metrics, curves = score(emb, session.protocol)
    curves["embeddings"] = emb[runner.projection_sample(session.protocol.labels)].numpy()
    return runner.MethodResult(dataclasses.replace(row, metrics=metrics), curves)
