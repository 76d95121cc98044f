"""Data sources, parsed from a spec string, all giving a :class:`FaceData`.

Specs: ``synthfaces`` or ``synthfaces:identities=200,difficulty=0.5`` (the default, rendered,
nothing downloaded), ``imagefolder:PATH`` (one sub-folder per identity; ``,nested=true`` reads every
image below it, ``,names=true`` says the folder names are people's names), ``cfp:DIR`` (CFP's 500
people, frontal and profile, named by its ``Data/list_name.txt``), ``recordio:DIR`` (insightface's
``train.rec`` / ``train.idx``, read without mxnet), ``digits`` (scikit-learn's bundled 8x8 digits).
Image folders and RecordIO files are decoded into memory, or with ``stream`` left on disk and
decoded when used (:mod:`mlcompare.data.stored`).
"""
from __future__ import annotations

import dataclasses

from mlcompare.config import limits
from mlcompare.data.facedata import FaceData
from mlcompare.data.framing import Framing
from mlcompare.errors import UserError

SOURCES = ("synthfaces", "imagefolder", "cfp", "recordio", "digits")
IMAGEFOLDER_OPTIONS = ("nested", "names")  # imagefolder:PATH,nested=true,names=true


def parse_options(text: str) -> dict[str, int | float | bool | str]:
    """``"a=1,b=0.5,c=true"`` -> ``{"a": 1, "b": 0.5, "c": True}``."""
    options: dict[str, int | float | bool | str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"data option '{item}' is not KEY=VALUE; write e.g. synthfaces:identities=200")
        options[key.strip()] = _value(raw.strip())
    return options


def _value(raw: str) -> int | float | bool | str:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def split_path_options(rest: str, known: tuple[str, ...]) -> tuple[str, dict[str, int | float | bool | str]]:
    """``("DIR", {"nested": True})`` from ``"DIR,nested=true"``: trailing ``,KEY=VALUE`` parts whose KEY
    is in ``known`` are options, the rest is the path (which may itself hold commas)."""
    path, options = rest, {}
    while "," in path:
        head, _, tail = path.rpartition(",")
        key = tail.partition("=")[0].strip()
        if "=" not in tail or key not in known:
            break
        options = parse_options(tail) | options
        path = head
    return path, options


def load(spec: str, *, size: int, seed: int = 0, stream: bool = False, device: str = "cpu",
         framing: Framing = Framing(), progress: bool = True) -> FaceData:
    """Load the data named by ``spec`` at ``size`` x ``size`` pixels (file sources left on disk with
    ``stream``; the generated ones are always in memory). ``synthfaces`` renders on ``device`` (unless
    its spec names one) and its images stay there; file sources are read into host memory (with a
    progress bar for large ones, unless ``progress`` is False), each photograph cropped and resized
    as ``framing`` says (generated sources are drawn at ``size`` and take no framing).

    Identities with one image are dropped (with a warning that counts them); fewer than two
    identities left is an error.
    """
    from mlcompare.data import digits, imagefolder

    name, _, rest = spec.partition(":")
    if not framing.is_default and name in ("synthfaces", "digits"):
        raise UserError(f"data.crop / crop_box / keep_aspect frame photographs (imagefolder, cfp, recordio, benchmarks); "
                        f"{name} is drawn at the size asked for: remove them or use photographs")
    if name == "imagefolder":
        path, options = split_path_options(rest, IMAGEFOLDER_OPTIONS)
        if not path:
            raise UserError("imagefolder needs a path: --data imagefolder:PATH")
        for key, value in options.items():
            if not isinstance(value, bool):
                raise UserError(f"imagefolder option {key}={value!r} must be true or false")
        data = imagefolder.load(path, size=size, stream=stream, nested=bool(options.get("nested", False)),
                                framing=framing, progress=progress)
        if options.get("names"):
            data = dataclasses.replace(data, source=data.source + ",names=true", named=True)
    elif name == "cfp":
        from mlcompare.data import cfp

        if not rest:
            raise UserError("cfp needs CFP's folder (holding Data/ and Protocol/): --data cfp:DIR")
        data = cfp.load(rest, size=size, stream=stream, framing=framing, progress=progress)
    elif name == "recordio":
        from mlcompare.data import recordio

        if not rest:
            raise UserError("recordio needs a folder holding train.rec and train.idx: --data recordio:DIR")
        data = recordio.load(rest, size=size, stream=stream, framing=framing, progress=progress)
    elif name == "digits":
        data = digits.load(size=size)
    elif name == "synthfaces":
        from mlcompare.data import synthfaces

        try:
            data = synthfaces.load(size=size, seed=seed, **({"device": device} | parse_options(rest)))
        except TypeError as err:  # an unknown knob
            raise UserError(f"synthfaces: {err}; see `mlcompare data --help` for the knobs") from err
    else:
        raise UserError(f"unknown data source '{name}'; valid: synthfaces[:KEY=VALUE,...], imagefolder:PATH[,nested=true], "
                        "cfp:DIR, recordio:DIR, digits")
    data = imagefolder.drop_singletons(data)
    if data.num_identities < 2:
        raise UserError(f"{spec}: {data.num_identities} identities with 2+ images; at least 2 are needed")
    return data


def resolved_spec(spec: str) -> str:
    """``spec`` with every knob its source has, at the value it loads with: ``synthfaces`` with all its
    knobs (:func:`~mlcompare.data.synthfaces.resolved_knobs`); other sources have none and come back as given.

    >>> resolved_spec("digits")
    'digits'
    """
    name, _, rest = spec.partition(":")
    if name != "synthfaces":
        return spec
    from mlcompare.data import synthfaces

    return "synthfaces:" + ",".join(f"{k}={v}" for k, v in synthfaces.resolved_knobs(**parse_options(rest)).items())


def load_split(train: str, test: str = "", *, size: int, seed: int, test_fraction: float, stream: bool = False,
               device: str = "cpu", framing: Framing = Framing(), progress: bool = True) -> tuple[FaceData, FaceData]:
    """The training and test sets of a comparison: ``test`` loaded on its own (disjoint identities by
    the user's word), or ``train``'s identities split seeded (:func:`~mlcompare.data.protocol.split_identities`).

    ``synthfaces:label_noise=X`` flips labels after the split, of training images only and towards
    other training identities (:func:`~mlcompare.data.noise.flip_labels`): test labels stay clean,
    and no wrong label names a test identity. Noise asked for on a separate test set is an error.
    """
    from mlcompare.data.noise import flip_labels
    from mlcompare.data.protocol import split_identities

    train, noise = _split_label_noise(train)
    if _split_label_noise(test)[1]:
        raise UserError(f"--test-data {test}: label_noise would corrupt the test labels; put it on the training data")
    full = load(train, size=size, seed=seed, stream=stream, device=device, framing=framing, progress=progress)
    if test:
        train_set, test_set = full, load(test, size=size, seed=seed + 1, framing=framing, progress=progress)
    else:
        train_set, test_set = split_identities(full, test_fraction=test_fraction, seed=seed)
    if noise:
        noisy = flip_labels(train_set, noise, seed=seed)
        train_set = dataclasses.replace(noisy, source=f"{noisy.source},label_noise={noise}")
    return train_set, test_set


def _split_label_noise(spec: str) -> tuple[str, float]:
    """``("synthfaces:identities=9", 0.3)`` from ``"synthfaces:identities=9,label_noise=0.3"``."""
    name, _, rest = spec.partition(":")
    if name != "synthfaces":
        return spec, 0.0
    kept, noise = [], 0.0
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, _, raw = item.partition("=")
        if key.strip() != "label_noise":
            kept.append(item)
            continue
        noise = _value(raw.strip())
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not limits.label_noise_ok(noise):
            raise UserError(f"synthfaces: label_noise must be a number {limits.LABEL_NOISE_TEXT}, got {raw.strip()!r}")
    return name + (":" + ",".join(kept) if kept else ""), float(noise)


__all__ = ["FaceData", "load", "load_split", "parse_options", "resolved_spec", "SOURCES"]
