"""What ``mlcompare losses`` prints: one line per loss (name, family, paper, defaults), or one's docstring.

Read from the losses themselves (the registry, each class's constructor defaults and docstring,
and :data:`mlcompare.losses.pml.KNOWN`), so the listing cannot drift from the code.
"""
from __future__ import annotations

import inspect
import re
import sys

from mlcompare.losses import REGISTRY, defaults, pml

# "Deng et al., "ArcFace: ...", CVPR 2019" -> ("Deng et al.", "2019"): the first author-year in a docstring
_CITATION = re.compile(r"([A-Z][A-Za-z\-]+(?: et al\.|(?:, [A-Z][A-Za-z\-]+)* & [A-Z][A-Za-z\-]+)?)"
                       r"[^.;()]*?\b((?:19|20)\d\d)\b")


def paper(cls: type) -> str:
    """``"Author et al. YEAR"`` from the class's (or else its module's) docstring, ``""`` if none."""
    for text in (cls.__doc__ or "", sys.modules[cls.__module__].__doc__ or ""):
        found = _CITATION.search(" ".join(text.split()))
        if found:
            return f"{found.group(1)} {found.group(2)}"
    return ""


def _shown(name: str) -> str:
    return ", ".join(f"{n}={v!r}" for n, v in defaults(name).items())


def lines() -> list[str]:
    """One line per registered loss, then one per tested ``pml:`` class."""
    rows = []
    for name, cls in sorted(REGISTRY.items()):
        rows.append((name, cls.family, paper(cls), _shown(name)))
    for class_name, known in sorted(pml.KNOWN.items()):
        rows.append((pml.PREFIX + class_name, known.family, known.paper, _shown(pml.PREFIX + class_name)))
    wn, wp = (max(len(r[i]) for r in rows) for i in (0, 2))
    return [f"{n:<{wn}}  {f:<14}  {p:<{wp}}  {d}".rstrip() for n, f, p, d in rows]


def describe(name: str) -> str:
    """The docstring of loss ``name`` (``pml:ClassName``: the adapter's note, then the library's own)."""
    if name.startswith(pml.PREFIX):
        cls = pml.loss_class(name.removeprefix(pml.PREFIX))
        return f"{name}: pytorch-metric-learning's {cls.__name__} through mlcompare's adapter.\n\n" \
               f"{inspect.getdoc(pml.PMLLoss)}\n\n{inspect.getdoc(pml) or ''}\n\nLibrary docstring:\n{inspect.getdoc(cls) or '(none)'}"
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))} or pml:ClassName")
    cls = REGISTRY[name]
    return f"{name} ({cls.family}): {cls.__module__}.{cls.__name__}\n\n{inspect.getdoc(cls)}"
