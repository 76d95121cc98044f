"""Label noise on the data spec corrupts training labels only: the test set keeps its true identities."""
import torch

from mlcompare.config import comparison as config
from mlcompare.config.comparison import apply_overrides
from mlcompare.run.runner import prepare_data

SPEC = "synthfaces:identities=30,images_per_identity=5"


def _split(tiny, spec):
    cfg = apply_overrides(config.load(str(tiny)), data=spec)
    return prepare_data(cfg, torch.device("cpu"))


def test_spec_label_noise_leaves_test_labels_clean(tiny):
    clean_train, clean_test, _ = _split(tiny, SPEC)
    noisy_train, noisy_test, _ = _split(tiny, SPEC + ",label_noise=0.3")
    # the same test identities and images, with their true labels and no image marked noisy
    assert noisy_test.identities == clean_test.identities
    assert torch.equal(noisy_test.labels, clean_test.labels) and torch.equal(noisy_test.images, clean_test.images)
    assert noisy_test.noisy is None or not noisy_test.noisy.any()
    # training images keep their identities' set; 30% of them carry another training identity's label
    assert noisy_train.identities == clean_train.identities and torch.equal(noisy_train.images, clean_train.images)
    changed = noisy_train.labels != clean_train.labels
    assert changed.sum().item() == round(0.3 * len(clean_train))
    assert torch.equal(changed, noisy_train.noisy)
    assert "label_noise=0.3" in noisy_train.source


def test_label_noise_on_a_separate_test_set_is_refused(tiny):
    import pytest

    from mlcompare.errors import UserError

    cfg = apply_overrides(config.load(str(tiny)), data=SPEC, test_data=SPEC + ",label_noise=0.2")
    with pytest.raises(UserError, match="label_noise would corrupt the test labels"):
        prepare_data(cfg, torch.device("cpu"))


def test_the_data_spec_and_a_method_take_the_same_label_noise_range(tiny, tmp_path):
    import pytest

    from mlcompare.data import _split_label_noise
    from mlcompare.errors import UserError

    assert _split_label_noise("synthfaces:label_noise=0.95") == ("synthfaces", 0.95)  # refused when the cap was 0.9
    assert config.load(str(tiny), sets=["methods.softmax.label_noise=0.95"]).methods[0].label_noise == 0.95
    with pytest.raises(UserError, match=r"label_noise must be a number in \[0, 1\), got '1.0'"):
        _split_label_noise("synthfaces:label_noise=1.0")
    with pytest.raises(UserError, match=r"label_noise must be in \[0, 1\), got 1.0"):
        config.load(str(tiny), sets=["methods.softmax.label_noise=1.0"])
