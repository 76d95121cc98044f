import pytest

from mlcompare import config
from mlcompare.errors import UserError
from mlcompare.runner import build_loss


@pytest.mark.parametrize("name", sorted(config.named()))
def test_every_named_comparison_parses_and_builds_its_methods(name):
    cfg = config.load(name)
    assert cfg.name == name and cfg.description
    for method in cfg.methods:
        loss = build_loss(method, num_classes=5, embedding_dim=cfg.backbone.embedding_dim)
        assert loss.family in ("classification", "pair")


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
