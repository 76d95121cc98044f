"""How the report writes numbers, counts, code and claims: one place, so every section reads alike.

The report shows 3-4 significant figures (the exact values stay in config.json and results.csv),
"1 seed" / "3 seeds" rather than "seed(s)", Markdown code as ``<code>`` in the HTML, and a
difference to the best method as a difference with its confidence interval, never as a bare p.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any

from mlcompare.config import results_schema
from mlcompare.run import provenance, stats

# Floats as Python prints them ("12.999655558336613", "1e-05"), the numbers :func:`round_numbers` rewrites.
FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])|(?<![\w.])-?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")
CODE = re.compile(r"`([^`]+)`")


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, as a reader writes it: 12.9997 -> "13",
    0.181164 -> "0.181", 0.00533 -> "0.00533", 1e-05 -> "1e-5"; values of ``digits`` or more
    integer digits are rounded to a whole number (1234.5 -> "1234"); NaN -> "n/a"."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value) or value == 0:
        return f"{value:g}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def round_numbers(text: str, digits: int = 3) -> str:
    """``text`` with every float in it (a parameter list, "s=12.999655558336613 m=0.18") to
    ``digits`` significant figures; integers and words are left as they are."""
    return FLOAT.sub(lambda m: sig(float(m.group()), digits), text)


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 seed", "3 seeds", "0 seeds"; ``many`` for irregular plurals ("identity", "identities")."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def inline_html(text: str) -> str:
    """``text`` escaped for HTML, with its Markdown code spans (`like this`) as ``<code>``."""
    return CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


def metric_name(metric: str) -> str:
    """What the report calls ``metric`` in prose (the results schema's label)."""
    return results_schema.label(metric)


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def versus_best(d: stats.Difference | None) -> str:
    """The "vs best" cell: the difference to the best method with its 95% CI over seeds and the
    Holm-corrected p, "tie" where that test is not significant; with one seed, the difference only."""
    if d is None:
        return "best"
    if math.isnan(d.mean):
        return "n/a"
    if d.n < 2:
        return f"{d.mean:+.3f} ({plural(d.n, 'seed')}: no test)"
    verdict = p_text(d.p_holm) if d.significant else f"tie ({p_text(d.p_holm)})"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] {verdict}"


def difference_clause(winner: str, loser: str, metric: str, d: stats.Difference, replicate: str = "seed") -> str:
    """The summary sentence's claim about ``winner`` against ``loser`` (``d``: loser - winner):
    "beats" only where the Holm-corrected test is significant, "ties with" otherwise, and no claim
    beyond the number with one seed."""
    gap = f"{-d.mean:+.3f} {metric_name(metric)}"
    if d.n < 2:
        return f"{winner} leads {loser} by {gap} on one seed, too few for a test between methods"
    # the interval is per comparison, the p corrected for all of them: it can exclude 0 in a tie, so say which is which
    ci = f"uncorrected 95% CI over {plural(d.n, replicate)} [{-d.high:+.3f}, {-d.low:+.3f}], Holm-corrected {p_text(d.p_holm)}"
    if d.significant:
        return f"{winner} beats {loser} by {gap} ({ci})"
    return f"{winner} ties with {loser}: the difference of {gap} is not significant ({ci})"


def provenance_lines(record: dict[str, Any] | None) -> list[str]:
    """The report's provenance lines from the run's provenance.json record (:mod:`mlcompare.run.provenance`;
    none for a run that predates it); a key that a record written by an older mlcompare lacks reads "unknown"."""
    if record is None:
        return []
    r = {key: provenance.UNKNOWN for key in ("mlcompare", "git_commit", "git_dirty", "python", "torch", "numpy", "faiss",
                                  "faiss_build", "optuna", "pytorch_metric_learning", "cpu", "threads", "cpus",
                                  "device", "command", "started")} | record
    code = f"mlcompare {r['mlcompare']} at commit {r['git_commit'][:12]}"
    if r["git_dirty"] == "yes":
        code += " with uncommitted changes"
    sessions = [record, *record.get("earlier", [])]
    first = record.get("earlier", [record])[0]  # a resumed run started when its first session did
    when = f"started {first.get('started', r['started'])}, finished {r.get('finished') or 'not yet'}"
    total = provenance.total_wall_seconds(record)
    if total is not None:
        when += f", {total:,.0f} s wall time"
    if len(sessions) > 1:
        when += f" over {len(sessions)} sessions (--resume)"
        if len({s.get("git_commit") for s in sessions}) > 1:
            when += " made by different commits"
    machine = f"{r['cpu']}, {plural(r['threads'], 'torch thread')} of {r['cpus']} CPUs, device {r['device']}"
    if r.get("gpu"):
        machine += f" ({r['gpu']})"
    data = "; ".join(f"{role} `{spec}`" for role, spec in r.get("data", {}).items() if spec)
    return [f"Provenance: {code}; Python {r['python']}, torch {r['torch']}, numpy {r['numpy']}, faiss {r['faiss']} "
            f"({r['faiss_build']} build), optuna {r['optuna']}, pytorch-metric-learning {r['pytorch_metric_learning']}; "
            f"{machine}; {when}; command `{r['command']}`.",
            f"Data knobs: {data or 'not recorded'}."]
