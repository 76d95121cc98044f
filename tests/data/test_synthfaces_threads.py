"""synthfaces renders CPU chunks in threads with one intra-op thread each: the process-wide
``torch.set_num_threads`` is restored on every path, an exception in a chunk included."""
import pytest
import torch

from mlcompare.data import synthfaces


def test_an_exception_while_rendering_restores_the_thread_count(monkeypatch):
    seen = []

    def broken_render(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("render failed")

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the threaded path needs more than one thread
    try:
        monkeypatch.setattr(synthfaces, "render", broken_render)
        monkeypatch.setattr(synthfaces, "PIXELS_PER_CHUNK", 1)  # 8 images a chunk: 4 x 4 images are 2 chunks
        with pytest.raises(RuntimeError, match="render failed"):
            synthfaces.load(size=16, identities=4, images_per_identity=4)
        assert seen and set(seen) == {1}  # the threaded path ran, one intra-op thread per chunk
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
