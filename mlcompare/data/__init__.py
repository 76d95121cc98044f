"""Data sources, parsed from a spec string, all giving a :class:`FaceData`.

Specs: ``synthfaces`` or ``synthfaces:identities=200,difficulty=0.5`` (the default, rendered,
nothing downloaded), ``imagefolder:PATH`` (one sub-folder per identity), ``recordio:DIR`` (insightface's
``train.rec`` / ``train.idx``, read without mxnet), ``digits`` (scikit-learn's bundled 8x8 digits).
Image folders and RecordIO files are decoded into memory, or with ``stream`` left on disk and
decoded when used (:mod:`mlcompare.data.stored`).
"""
from __future__ import annotations

from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError

SOURCES = ("synthfaces", "imagefolder", "recordio", "digits")


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


def load(spec: str, *, size: int, seed: int = 0, stream: bool = False, device: str = "cpu") -> FaceData:
    """Load the data named by ``spec`` at ``size`` x ``size`` pixels (file sources left on disk with
    ``stream``; the generated ones are always in memory). ``synthfaces`` renders on ``device`` (unless
    its spec names one) and its images stay there; file sources are read into host memory.

    Identities with one image are dropped (with a warning that counts them); fewer than two
    identities left is an error.
    """
    from mlcompare.data import digits, imagefolder

    name, _, rest = spec.partition(":")
    if name == "imagefolder":
        if not rest:
            raise UserError("imagefolder needs a path: --data imagefolder:PATH")
        data = imagefolder.load(rest, size=size, stream=stream)
    elif name == "recordio":
        from mlcompare.data import recordio

        if not rest:
            raise UserError("recordio needs a folder holding train.rec and train.idx: --data recordio:DIR")
        data = recordio.load(rest, size=size, stream=stream)
    elif name == "digits":
        data = digits.load(size=size)
    elif name == "synthfaces":
        from mlcompare.data import synthfaces

        try:
            data = synthfaces.load(size=size, seed=seed, **({"device": device} | parse_options(rest)))
        except TypeError as err:  # an unknown knob
            raise UserError(f"synthfaces: {err}; see `mlcompare data --help` for the knobs") from err
    else:
        raise UserError(f"unknown data source '{name}'; valid: synthfaces[:KEY=VALUE,...], imagefolder:PATH, recordio:DIR, digits")
    data = imagefolder.drop_singletons(data)
    if data.num_identities < 2:
        raise UserError(f"{spec}: {data.num_identities} identities with 2+ images; at least 2 are needed")
    return data


__all__ = ["FaceData", "load", "parse_options", "SOURCES"]
