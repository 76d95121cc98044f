import pytest

from mlcompare.config import comparison as config
from mlcompare.errors import UserError
from mlcompare.run.runner import build_loss


@pytest.mark.parametrize("name", sorted(config.named()))
def test_every_named_comparison_parses_and_builds_its_methods(name):
    cfg = config.load(name)
    assert cfg.name == name and cfg.description
    for method in cfg.methods:
        loss = build_loss(method, num_classes=5, embedding_dim=cfg.backbone.embedding_dim)
        assert loss.family in ("classification", "pair", "proxy")  # proxy: pml:ProxyAnchorLoss and kin


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\n' + text)
    return str(path)


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    path = _write(tmp_path, '[train]\nstep = 3\n[[methods]]\nname = "a"\nloss = "softmax"\n')
    with pytest.raises(UserError, match=r"c\.toml \[train\]: unknown key 'step'; valid keys: steps, p, k"):
        config.load(path)


def test_unknown_loss_and_miner_list_valid_names(tmp_path):
    with pytest.raises(UserError, match="unknown loss 'arcfase'; valid losses: .*arcface"):
        config.load(_write(tmp_path, '[[methods]]\nname = "a"\nloss = "arcfase"\n'))
    with pytest.raises(UserError, match="unknown miner 'hardest'; valid miners: .*batch_hard"):
        config.load(_write(tmp_path, '[[methods]]\nname = "a"\nloss = "triplet"\nminer = "hardest"\n'))


def test_unknown_comparison_name():
    with pytest.raises(UserError, match="unknown comparison 'nope'; valid: .*quick"):
        config.load("nope")


def test_a_method_name_defaults_to_its_loss(tmp_path):
    cfg = config.load(_write(tmp_path, 'methods = [{ loss = "softmax" }, { name = "tri", loss = "triplet" }]\n'))
    assert [m.name for m in cfg.methods] == ["softmax", "tri"]
    with pytest.raises(UserError, match=r"\[\[methods\]\] #1: missing key 'loss'"):
        config.load(_write(tmp_path, 'methods = [{ name = "x" }]\n'))


def test_apply_overrides_budget_steps_and_the_same_rules(tmp_path):
    cfg = config.load("quick")
    longer = config.apply_overrides(cfg, budget="standard")
    assert (longer.train.steps, longer.train.warmup_steps) == (cfg.train.steps * 4, cfg.train.warmup_steps * 4)
    short = config.apply_overrides(cfg, budget="long", steps=20, seeds=2, workers=1, precision="bf16", data="digits")
    assert (short.train.steps, short.train.warmup_steps, short.seeds, short.data.workers) == (20, 2, 2, 1)
    assert (short.train.precision, short.data.train) == ("bf16", "digits")
    for kwargs, message in (({"steps": 0}, "--steps must be >= 1, got 0"), ({"seeds": 0}, "--seeds must be >= 1, got 0"),
                            ({"workers": -1}, r"--workers must be >= 0 \(0: decode into memory\), got -1"),
                            ({"precision": "fp8"}, "--precision must be 'fp32', 'bf16' or 'fp16', got 'fp8'"),
                            ({"budget": "huge"}, "--budget must be one of quick, standard, long, got 'huge'")):
        with pytest.raises(UserError, match=f"^{message}$"):
            config.apply_overrides(cfg, **kwargs)
