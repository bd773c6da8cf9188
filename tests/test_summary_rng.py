"""fg.summary (layers, output shapes, parameter counts) and the global RNG state."""
import numpy as np
import pytest


def test_summary_lists_layers_shapes_and_counts(fg):
    nn = fg.nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    s = fg.summary(model, (5, 4))
    assert [r[1] for r in s.rows] == ["Sequential", "Linear", "ReLU", "Linear"]
    assert [r[2] for r in s.rows] == [(5, 3), (5, 8), (5, 8), (5, 3)]
    assert [r[3] for r in s.rows] == [0, 4 * 8 + 8, 0, 8 * 3 + 3]
    assert s.total_params == s.trainable_params == 4 * 8 + 8 + 8 * 3 + 3
    model[2].weight.requires_grad_(False)
    assert fg.summary(model, (5, 4)).trainable_params == 4 * 8 + 8 + 3
    assert model.training                           # the model's mode is put back
    text = str(s)
    assert "(5, 8)" in text and "total parameters: 67 (67 trainable)" in text
    assert model(fg.ones(2, 4)).shape == (2, 3)      # forward is the class's again


def test_summary_errors(fg):
    with pytest.raises(TypeError, match="summary: expected an nn.Module"):
        fg.summary(lambda x: x, (1, 2))
    with pytest.raises(ValueError, match="linear"):
        fg.summary(fg.nn.Linear(3, 2), (1, 4))


def test_rng_state_round_trip(fg):
    fg.manual_seed(7)
    state = fg.get_rng_state()
    a = fg.randn(5).numpy().copy()
    fg.rand(3)
    fg.set_rng_state(state)
    np.testing.assert_array_equal(fg.randn(5).numpy(), a)
    before = fg.get_rng_state()
    with pytest.raises(TypeError, match="set_rng_state"):
        fg.set_rng_state(3)
    with pytest.raises(ValueError, match="set_rng_state"):
        fg.set_rng_state({"bit_generator": "MT19937", "state": {}})
    after_failures = fg.randn(4).numpy().copy()      # the failed calls changed nothing
    fg.set_rng_state(before)
    np.testing.assert_array_equal(fg.randn(4).numpy(), after_failures)
