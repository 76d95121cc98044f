"""The README's comparison-file example is a file that loads (extends quick, sweeps p)."""
import re
from pathlib import Path

from mlcompare.config import comparison as config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_comparison_example_loads(tmp_path):
    section = README.read_text().split("### Comparison files", 1)[1]
    path = tmp_path / "mine.toml"
    path.write_text(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    cfg = config.load(str(path))
    quick = config.load("quick")
    assert (cfg.seeds, cfg.sweep, cfg.train.steps, cfg.train.lr) == (3, "p", 600, quick.train.lr)
    assert [m.name for m in cfg.methods[:4]] == ["arcface-p8", "cosface-p8", "triplet-batch-hard-p8", "arcface-tuned-p8"]
    assert len(cfg.methods) == 12 and cfg.methods[1].params == {"s": 30.0, "m": 0.2}
    assert cfg.methods[3].train == {"lr": 5.3e-3} and cfg.methods[3].params == {"s": 13.0, "m": 0.18}
