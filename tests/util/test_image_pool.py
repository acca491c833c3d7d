import pytest
import torch

from util.image_pool import ImagePool


def test_capacity_zero_returns_the_input() -> None:
    images = torch.randn(2, 3, 4, 4)
    assert ImagePool(0).query(images) is images


def test_pool_fills_then_mixes_old_and_new() -> None:
    pool = ImagePool(3, seed=1)
    first = torch.zeros(3, 1, 2, 2)
    assert torch.equal(pool.query(first), first)
    assert len(pool.images) == 3
    returned_old = 0
    for value in range(1, 41):
        result = pool.query(torch.full((1, 1, 2, 2), float(value)))
        assert result.shape == (1, 1, 2, 2)
        returned_old += int(result[0, 0, 0, 0] != value)
    # With probability 1/2 a stored (older) image comes back instead of the new one.
    assert 8 < returned_old < 32
    assert all(int(image[0, 0, 0]) <= 40 for image in pool.images)


def test_state_dict_resumes_the_same_draws() -> None:
    pool = ImagePool(2, seed=3)
    for value in range(4):
        pool.query(torch.full((1, 1, 2, 2), float(value)))
    restored = ImagePool(2, seed=99)
    restored.load_state_dict(pool.state_dict(), torch.device("cpu"))
    for value in range(4, 12):
        batch = torch.full((1, 1, 2, 2), float(value))
        assert torch.equal(pool.query(batch), restored.query(batch))


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        ImagePool(-1)
