"""``mlcompare tune``: the same hyperparameter search for every method, then its best setting tested.

The protocol of "A Metric Learning Reality Check" (Musgrave, Belongie, Lim 2020) on our open-set split:

1. The test identities are set aside first (:func:`mlcompare.runner.open_session`); tuning never
   embeds a test image.
2. The training identities are split, seeded, into ``folds`` identity-disjoint folds. A trial trains
   on K-1 folds and is scored on the held-out fold's identities, for each fold; its objective is the
   mean over folds of one ``results.csv`` score (``[tuning] objective``, default MAP@R).
3. Equal budget: every method gets the same number of trials, steps per trial and folds; its first
   trial is the comparison's own setting, so "default" is always scored on the same folds.
4. Optuna's TPE sampler, seeded per trial from (seed, method, trial index): the sampled setting is a
   function of the completed trials only, so an interrupted study resumed samples what an
   uninterrupted one would have. With ``prune``, Optuna's median pruner stops a trial whose first
   folds score below the median of completed trials at the same fold (pruned trials count).
5. Final phase: each method's default and tuned settings retrained on all training identities for
   ``seeds`` seeds and scored on the test set (``setting`` column); optionally the best trial's K
   fold models, L2-normalised and concatenated, as one more row (MLRC's "concatenated" embedding).

Run directory: the usual files plus ``tuning/study.db`` (the Optuna study, SQLite; one study per
method), ``tuning/trials.csv`` (one row per trial), ``tuning/space.json`` (each method's searched ranges,
which the report checks the chosen values against) and, with ``ensemble``, ``tuning/ensemble/``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlcompare import losses, runner
from mlcompare.backbones import build_backbone, embed
from mlcompare.config import ComparisonConfig, MethodConfig
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.names import RAW_PIXELS, check_distinct, slug
from mlcompare.rundir import write_csv_atomic
from mlcompare.scoring import TestProtocol, score
from mlcompare.search_space import Dim, at_edges, override
from mlcompare.trainer import LOSS_LR_SEARCH, SEARCH_SPACE, save_atomic

TRAIN_KEYS = ("lr", "weight_decay", "loss_lr")  # dimensions that belong to the train section


def _optuna():
    try:
        import optuna
    except ImportError as err:  # a declared dependency: only a broken install gets here
        raise UserError("mlcompare tune needs Optuna: pip install optuna (a dependency of mlcompare)") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
    return " ".join(filter(None, [runner._params_text(method), train]))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- the study


class TrialFailed(Exception):
    """A trial that cannot be scored (a diverged model, a sampled parameter its loss rejects)."""


@dataclass
class Tuner:
    """Runs one method's study: trials on the folds, recorded in the SQLite study."""

    session: runner.Session
    folds: list[Fold]
    storage: str
    best_dir: Path | None

    def study(self, method: MethodConfig):
        optuna = _optuna()
        return optuna.create_study(study_name=method.name, storage=self.storage, direction="maximize",
                                   load_if_exists=True, pruner=optuna.pruners.MedianPruner(n_startup_trials=2))

    def counted(self, study) -> list:
        """Trials that count against the budget: finished ones, not those interrupted mid-flight."""
        optuna = _optuna()
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return [t for t in study.get_trials(deepcopy=False) if t.state in done and not t.user_attrs.get("interrupted")]

    def forget_interrupted(self, study) -> None:
        """A trial left running by a killed process is marked failed and ``interrupted``: it does not
        count, and its trial index is run again (with the same sampled setting, see the module doc)."""
        optuna = _optuna()
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)

    def run_trial(self, method_index: int, method: MethodConfig, space: Space, study, index: int) -> None:
        optuna = _optuna()
        config = self.session.config
        t = config.tuning
        if index == 0:  # the comparison's own setting, scored on the same folds as every other trial
            study.enqueue_trial({k: space.defaults[k] for k in space.dims}, skip_if_exists=False)
        seed = int(np.random.SeedSequence([t.seed, method_index, index]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials)
        trial = study.ask()
        trial.set_user_attr("index", index)
        tic = time.perf_counter()
        scores: list[float] = []
        models: list[torch.nn.Module] = []
        try:
            values = {name: dim.suggest(trial, name) for name, dim in space.dims.items()} | space.fixed
            cfg, m = apply_setting(config, method, values, name=method.name)
            # a trial is scored on its fold once, at the end: no validation curve on the way
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_every=0))
            try:
                with torch.device("meta"):
                    runner.build_loss(m, num_classes=2, embedding_dim=4, class_counts=TOY_COUNTS)
            except UserError as err:
                raise TrialFailed(str(err)) from err
            for f, fold in enumerate(self.folds):
                result = runner.train_and_score(cfg, m, t.seed, fold.train, fold.validation, fold.protocol,
                                                self.session.device, checkpoint=None, resume=False, progress=False)
                value = result.row.get(t.objective)
                value = math.nan if value is None else value  # None: not measurable on this fold
                if result.row["status"] != "ok" or not math.isfinite(value):
                    raise TrialFailed(result.row.get("message") or f"{t.objective} is {value}")
                scores.append(float(value))
                models.append(result.model)
                trial.report(float(value), f)
                if t.prune and f + 1 < len(self.folds) and trial.should_prune():
                    trial.set_user_attr("fold_scores", scores)
                    trial.set_user_attr("seconds", time.perf_counter() - tic)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    return
        except TrialFailed as err:
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("seconds", time.perf_counter() - tic)
            trial.set_user_attr("message", str(err))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            print(f"{method.name} trial {index} failed: {err}; the search goes on", file=sys.stderr)
            return
        mean = float(np.mean(scores))
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("seconds", time.perf_counter() - tic)
        best_before = _best_value(study)
        study.tell(trial, mean)
        if self.best_dir is not None and (best_before is None or mean > best_before):
            for f, model in enumerate(models):  # the best trial's fold models, for the ensemble row
                save_atomic({"model": model.state_dict()}, self.best_dir / f"{slug(method.name)}-fold{f}.pt")


def _best_value(study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


def trials_table(studies: dict[str, Any], folds: int) -> pd.DataFrame:
    """``trials.csv``: method, trial index, parameters (JSON), the score on each fold, their mean,
    state (complete / pruned / failed), seconds and message, in trial order per method."""
    rows = []
    for method, study in studies.items():
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.user_attrs.get("interrupted") or t.state.name in ("RUNNING", "WAITING"):
                continue
            scores = list(t.user_attrs.get("fold_scores", []))
            row = {"method": method, "trial": t.user_attrs.get("index", t.number),
                   "params": json.dumps(t.params, sort_keys=True)}
            row |= {f"fold_{f}": scores[f] if f < len(scores) else math.nan for f in range(folds)}
            row |= {"mean": t.value if t.state.name == "COMPLETE" else (float(np.mean(scores)) if scores else math.nan),
                    "state": {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[t.state.name],
                    "seconds": t.user_attrs.get("seconds", math.nan), "message": t.user_attrs.get("message", "")}
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the command


def tune(config: ComparisonConfig, out: Path, *, device: str = "auto", force: bool = False, resume: bool = False,
         progress: bool = True, command: str | None = None) -> Path:
    """Tune every method of ``config`` on identity-disjoint folds of its training identities, then
    retrain each method's default and best settings over ``config.seeds`` seeds and score them on
    the test set; write the run directory (``tuning/`` included) and its report."""
    optuna = _optuna()
    if runner.distributed.from_env(torch.device("cpu")).active:
        raise UserError("mlcompare tune runs in one process; start it without torchrun")
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
    tuner = Tuner(session, folds, f"sqlite:///{(tuning_dir / 'study.db').absolute()}", best_dir)
    (tuning_dir / "space.json").write_text(json.dumps(
        {name: {k: dataclasses.asdict(d) for k, d in space.dims.items()} for name, space in spaces.items()}, indent=2))
    studies = {m.name: tuner.study(m) for m in config.methods}
    total = len(config.methods) * config.tuning.trials
    bar = tqdm(total=total, unit="trial", desc="tuning", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    bar.update(sum(min(len(tuner.counted(s)), config.tuning.trials) for s in studies.values()))
    for i, method in enumerate(config.methods):
        study = studies[method.name]
        tuner.forget_interrupted(study)
        while (index := len(tuner.counted(study))) < config.tuning.trials:
            tuner.run_trial(i, method, spaces[method.name], study, index)
            write_csv_atomic(tuning_dir / "trials.csv", trials_table(studies, config.tuning.folds))
            bar.update(1)
            best = _best_value(study)
            bar.set_postfix(method=method.name, best=f"{best:.3f}" if best is not None else "-")
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
            first = [t for t in tuner.counted(studies[entry.method.name]) if t.user_attrs.get("index") == 0]
            entry.extra["validation"] = float(first[0].value) if first and first[0].value is not None else math.nan
    runner.train_entries(session, entries, resume=resume, progress=progress)
    if best_dir is not None:
        for method in config.methods:
            if not session.records.done(f"{method.name}-ensemble", 0):
                session.records.write(ensemble_result(session, method, best_dir))
    done = runner.close_session(session)
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
    from mlcompare.checkpoints import load_checkpoint

    config = session.config
    paths = sorted(best_dir.glob(f"{slug(method.name)}-fold*.pt"))
    row = {"method": f"{method.name}-ensemble", "group": method.group or method.name, "seed": 0, "loss": method.loss,
           "family": losses.family(method.loss, method.family), "setting": "ensemble", "params": f"{len(paths)} fold models",
           "steps": config.train.steps, "message": "", "train_seconds": math.nan, "images_per_s": math.nan}
    if not paths:
        return runner.MethodResult(row | {"status": "failed", "message": "no completed trial: no fold models"})
    models = []
    for path in paths:
        model = build_backbone(config.backbone, image_size=config.data.size,
                               embedding_dim=method.embedding_dim or config.backbone.embedding_dim)
        model.load_state_dict(load_checkpoint(path, map_location="cpu")["model"])
        models.append(model.to(session.device, memory_format=torch.channels_last))
    emb = ensemble_embeddings(models, session.test_set.images, device=session.device, precision=config.train.precision)
    metrics, curves = score(emb, session.protocol)
    curves["embeddings"] = emb[runner._projection_sample(session.protocol.labels)].numpy()
    return runner.MethodResult(row | {"status": "ok", **metrics}, curves)
