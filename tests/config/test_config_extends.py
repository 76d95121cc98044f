"""``extends``: a base file deep-merged under the extending one."""
import pytest

from mlcompare.config import comparison as config
from mlcompare.errors import UserError

METHOD = '[[methods]]\nname = "a"\nloss = "softmax"\n'


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_tables_merge_key_by_key_and_arrays_replace(tmp_path):
    _write(tmp_path / "base.toml", 'description = "base"\nseeds = 2\n[train]\nsteps = 7\nlr = 0.5\n'
                                   '[backbone]\nwidths = [8, 16, 32]\nblocks = [1, 1, 1]\n' + METHOD
           + '[[methods]]\nname = "b"\nloss = "cosface"\n')
    cfg = config.load(_write(tmp_path / "top.toml", 'extends = "base.toml"\ndescription = "top"\n[train]\nlr = 0.25\n'
                                                    '[backbone]\nwidths = [4, 8]\nblocks = [2, 2]\n'
                                                    '[[methods]]\nname = "c"\nloss = "arcface"\n'))
    assert (cfg.name, cfg.description, cfg.seeds) == ("top", "top", 2)
    assert (cfg.train.steps, cfg.train.lr, cfg.train.p) == (7, 0.25, 16)  # merged, base kept, default
    assert cfg.backbone.widths == [4, 8] and cfg.backbone.blocks == [2, 2]  # arrays replaced, not merged
    assert [m.name for m in cfg.methods] == ["c"]  # [[methods]] replaced whole


def test_chain_and_path_relative_to_the_extending_file(tmp_path):
    _write(tmp_path / "bases" / "root.toml", "[train]\nsteps = 5\np = 4\n")
    _write(tmp_path / "bases" / "mid.toml", 'extends = "root.toml"\n[train]\np = 6\n' + METHOD)  # relative to bases/
    cfg = config.load(_write(tmp_path / "runs" / "top.toml", 'extends = "../bases/mid.toml"\ndescription = "d"\n'
                                                             '[train]\nk = 3\n'))
    assert (cfg.train.steps, cfg.train.p, cfg.train.k) == (5, 6, 3)
    assert [m.name for m in cfg.methods] == ["a"]


def test_extends_a_shipped_comparison_by_name(tmp_path):
    quick = config.load("quick")
    cfg = config.load(_write(tmp_path / "mine.toml", 'extends = "quick"\nseeds = 4\n[data]\ntrain = "digits"\n'))
    assert cfg.name == "mine" and cfg.seeds == 4 and cfg.data.train == "digits"
    assert cfg.methods == quick.methods and cfg.description == quick.description
    assert cfg.train == quick.train and cfg.data.test_fraction == quick.data.test_fraction


def test_cycle_is_an_error(tmp_path):
    _write(tmp_path / "a.toml", 'extends = "b.toml"\ndescription = "d"\n' + METHOD)
    _write(tmp_path / "b.toml", 'extends = "c.toml"\n')
    _write(tmp_path / "c.toml", 'extends = "a.toml"\n')
    with pytest.raises(UserError, match=r"c\.toml: extends makes a cycle \(a\.toml -> b\.toml -> c\.toml -> a\.toml\)"):
        config.load(str(tmp_path / "a.toml"))
    _write(tmp_path / "self.toml", 'extends = "self.toml"\n')
    with pytest.raises(UserError, match="cycle"):
        config.load(str(tmp_path / "self.toml"))


def test_unknown_base(tmp_path):
    with pytest.raises(UserError, match=r"extends 'nope': no such comparison; valid: .*quick"):
        config.load(_write(tmp_path / "a.toml", 'extends = "nope"\n'))
    with pytest.raises(UserError, match=r"extends 'gone\.toml': file '.*gone\.toml' does not exist"):
        config.load(_write(tmp_path / "a.toml", 'extends = "gone.toml"\n'))
    with pytest.raises(UserError, match="extends must be a string"):
        config.load(_write(tmp_path / "a.toml", 'extends = 3\n'))


def test_unknown_key_names_the_file_it_is_in(tmp_path):
    _write(tmp_path / "base.toml", '[train]\nstepz = 3\n')
    with pytest.raises(UserError, match=r"base\.toml \[train\]: unknown key 'stepz'; valid keys: steps, p, k"):
        config.load(_write(tmp_path / "top.toml", 'extends = "base.toml"\ndescription = "d"\n' + METHOD))
    _write(tmp_path / "base.toml", 'descripton = "d"\n')
    with pytest.raises(UserError, match=r"base\.toml: unknown key 'descripton'; valid keys: name, description"):
        config.load(_write(tmp_path / "top.toml", 'extends = "base.toml"\n' + METHOD))


def test_merged_result_is_checked_as_a_whole(tmp_path):
    """Each file alone is fine; merged, a required key is missing, or widths and blocks disagree."""
    _write(tmp_path / "base.toml", '[backbone]\nwidths = [8, 16]\nblocks = [1, 1]\n')
    with pytest.raises(UserError, match=r"top\.toml: missing key 'description'"):
        config.load(_write(tmp_path / "top.toml", 'extends = "base.toml"\n' + METHOD))
    with pytest.raises(UserError, match=r"top\.toml: backbone\.widths \[4, 8, 16\] and backbone\.blocks \[1, 1\] "
                                        r"must have the same length"):
        config.load(_write(tmp_path / "top.toml", 'extends = "base.toml"\ndescription = "d"\n'
                                                  '[backbone]\nwidths = [4, 8, 16]\n' + METHOD))
