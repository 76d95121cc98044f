"""``[sweep]``: methods expanded over one field's values; the old ``sweep = "FIELD"`` still works."""
import pytest

from mlcompare.config import comparison as config
from mlcompare.errors import UserError

TWO = 'methods = [{ loss = "arcface" }, { name = "tri", loss = "triplet", miner = "batch_hard", group = "metric" }]\n'


def _load(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\n' + text)
    return config.load(str(path))


def test_rows_are_value_major_and_named_from_the_template(tmp_path):
    cfg = _load(tmp_path, TWO + '[sweep]\nkey = "k"\nvalues = [2, 8]\n')
    assert cfg.sweep == "k"
    assert [(m.name, m.group, m.k, m.p) for m in cfg.methods] == [
        ("arcface-k2", "arcface", 2, 0), ("tri-k2", "metric", 2, 0), ("arcface-k8", "arcface", 8, 0), ("tri-k8", "metric", 8, 0)]
    assert cfg.methods[1].miner == "batch_hard" and cfg.methods[0].params == {"s": 64.0, "m": 0.5}


def test_labels_name_and_a_subset_of_methods(tmp_path):
    cfg = _load(tmp_path, 'methods = [{ loss = "softmax" }, { loss = "arcface" }, { loss = "cosface" }]\n'
                          '[sweep]\nkey = "label_noise"\nvalues = [0.0, 0.25]\nlabels = ["0", "25"]\n'
                          'name = "{method}@{label}%"\nmethods = ["cosface", "arcface"]\n')
    # unswept methods first, then the rows, in the order the methods are listed (not sweep.methods')
    assert [(m.name, m.label_noise) for m in cfg.methods] == [
        ("softmax", 0.0), ("arcface@0%", 0.0), ("cosface@0%", 0.0), ("arcface@25%", 0.25), ("cosface@25%", 0.25)]


def test_a_loss_parameter_sweep_keeping_the_method(tmp_path):
    cfg = _load(tmp_path, 'methods = [{ loss = "cosface", params = { s = 20.0 } }, { loss = "softmax" }]\n'
                          '[sweep]\nkey = "params.m"\nvalues = [0.1, 0.5]\nmethods = ["cosface"]\nkeep = true\n'
                          'group = "margins"\n')
    assert cfg.sweep == "params.m"
    assert [(m.name, m.group, m.params) for m in cfg.methods] == [
        ("cosface", "", {"s": 20.0, "m": 0.35}), ("softmax", "", {}),
        ("cosface-m0.1", "margins", {"s": 20.0, "m": 0.1}), ("cosface-m0.5", "margins", {"s": 20.0, "m": 0.5})]


def test_the_old_string_form_still_works(tmp_path):
    cfg = _load(tmp_path, 'sweep = "p"\n[[methods]]\nname = "a-p4"\nloss = "softmax"\np = 4\n'
                          '[[methods]]\nname = "a-p8"\nloss = "softmax"\np = 8\n')
    assert cfg.sweep == "p" and [(m.name, m.p) for m in cfg.methods] == [("a-p4", 4), ("a-p8", 8)]
    with pytest.raises(UserError, match="sweep must be one of label_noise, embedding_dim, p, k, train_identities or params.NAME, got 'lr'"):
        _load(tmp_path, 'sweep = "lr"\n' + TWO)


@pytest.mark.parametrize("sweep, message", [
    ('key = "p"\nvalues = []', r"sweep\.values must be a non-empty list, got \[\]"),
    ('key = "lr"\nvalues = [1]', "sweep must be one of label_noise, embedding_dim, p, k, train_identities or params.NAME, got 'lr'"),
    ('key = "p"\nvalues = [4]\nmethods = ["nope"]', "sweep.methods names 'nope', which is not a method; methods: arcface, tri"),
    ('key = "p"\nvalues = [4, 8]\nlabels = ["x"]', "sweep.labels has 1 entries for 2 values"),
    ('key = "p"\nvalues = [4]\nname = "{model}"', r"sweep\.name '\{model\}' is not a valid template"),
    ('key = "p"\nvalues = [4]\nname = "same"', "method names must be unique"),
    ('key = "p"\nvalues = ["big"]', "method 'arcface-pbig': p must be an integer, got 'big'"),
    ('key = "p"\nvalues = [4]\nstep = 1', r"c\.toml \[sweep\]: unknown key 'step'; valid keys: key, values"),
    ('values = [4]', "missing key 'key'"),
])
def test_bad_sweeps(tmp_path, sweep, message):
    with pytest.raises(UserError, match=message):
        _load(tmp_path, TWO + "[sweep]\n" + sweep + "\n")


def test_a_swept_key_set_on_the_method_is_an_error_not_overwritten(tmp_path):
    with pytest.raises(UserError, match="method 'arcface' sets p, which the sweep varies"):
        _load(tmp_path, 'methods = [{ loss = "arcface", p = 4 }]\n[sweep]\nkey = "p"\nvalues = [8]\n')
