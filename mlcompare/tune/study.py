"""The Optuna studies of one ``mlcompare tune``: created once, joined only with the same comparison and data.

A tune named ``NAME`` is a study ``NAME`` holding what the workers must agree on (the comparison
and a fingerprint of the training data, as user attributes) and one study ``NAME/METHOD`` per
method, its first trial (the comparison's own setting) enqueued. Whoever creates study ``NAME``
creates the rest and then marks it ready; everyone else waits for that mark and checks its own
comparison and data against it, so that studies are created once however many workers start at
the same time. With the default study name ``""`` (SQLite inside the run directory) the method
studies are named by the method alone, as before there were workers.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from mlcompare.config.comparison import ComparisonConfig
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.run.rundir import flatten

# Keys a worker may set for itself: where its copy of the data lives and how it is read, its logging.
PER_WORKER = ("data.train", "data.test", "data.workers", "logging.tensorboard")
READY_WAIT_S = 120.0  # how long a joining worker waits for the creator to finish creating the studies
PRIVATE_META = "#mlcompare-tune"  # the default (unnamed) tune's own study: no method is named so


def names(study: str, methods: list[str]) -> tuple[str, dict[str, str]]:
    """The tune's own study name and each method's study name.

    >>> names("run1", ["arcface"])
    ('run1', {'arcface': 'run1/arcface'})
    >>> names("", ["arcface"])
    ('#mlcompare-tune', {'arcface': 'arcface'})
    """
    if not study:
        return PRIVATE_META, {m: m for m in methods}
    return study, {m: f"{study}/{m}" for m in methods}


def fingerprint(config: ComparisonConfig, train_set: FaceData) -> dict[str, Any]:
    """What every worker of one tune must share: the comparison (bar :data:`PER_WORKER`) and the
    training data's size, identities and labels (a hash of each, so another path to the same data joins)."""
    flat = {k: v for k, v in flatten(config.to_dict()).items() if k not in PER_WORKER}
    identities = hashlib.sha256("\n".join(train_set.identities).encode()).hexdigest()[:16]
    labels = hashlib.sha256(train_set.labels.cpu().numpy().tobytes()).hexdigest()[:16]
    return flat | {"training data images": len(train_set), "training data identities (hash)": identities,
                   "training data labels (hash)": labels}


def differences(saved: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """``key: STUDY's -> this worker's`` for each key that differs (values shortened)."""
    def short(v: Any) -> str:
        text = json.dumps(v, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{k}: {short(saved.get(k))} in the study, {short(mine.get(k))} here"
            for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)]


def create_once(storage: Any, study: str, fp: dict[str, Any], first: dict[str, dict[str, Any]], *, pruner: Any
                ) -> tuple[dict[str, Any], bool]:
    """Each method's study (created here, with its first trial ``first[method]`` enqueued, or loaded
    when another worker created them), and whether this call created them."""
    import optuna

    meta_name, method_names = names(study, list(first))
    try:
        meta = optuna.create_study(storage=storage, study_name=meta_name)
    except optuna.exceptions.DuplicatedStudyError:
        return join(storage, study, fp, list(first), pruner=pruner), False
    meta.set_user_attr("fingerprint", fp)
    for method, study_name in method_names.items():
        s = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", pruner=pruner)
        s.enqueue_trial(first[method], skip_if_exists=False)
    meta.set_user_attr("ready", True)
    return {m: optuna.load_study(study_name=n, storage=storage, pruner=pruner) for m, n in method_names.items()}, True


def join(storage: Any, study: str, fp: dict[str, Any], methods: list[str], *, pruner: Any) -> dict[str, Any]:
    """The method studies of an existing tune, once its creator has made them all; refused with
    one line naming the first differences when this worker's comparison or data are not the study's."""
    import optuna

    meta_name, method_names = names(study, methods)
    where = f"study '{study or meta_name}'"
    try:
        meta = optuna.load_study(study_name=meta_name, storage=storage)
    except KeyError as err:
        raise UserError(f"{where} does not exist in this storage: start the tune first (mlcompare tune ... "
                        "--storage URL), then join it") from err
    deadline = time.monotonic() + READY_WAIT_S
    while not meta.user_attrs.get("ready"):
        if time.monotonic() > deadline:
            raise UserError(f"{where} is still being created after {READY_WAIT_S:.0f} s; if its creator died, delete "
                            f"it (optuna delete-study --study-name ...) and start the tune again")
        time.sleep(0.5)
        meta = optuna.load_study(study_name=meta_name, storage=storage)
    changed = differences(meta.user_attrs["fingerprint"], fp)
    if changed:
        raise UserError(f"this worker's comparison or data differ from {where}'s ({'; '.join(changed[:3])}"
                        f"{f'; and {len(changed) - 3} more' if len(changed) > 3 else ''}); start it with the "
                        "study's comparison, options and data")
    return {m: optuna.load_study(study_name=n, storage=storage, pruner=pruner) for m, n in method_names.items()}
