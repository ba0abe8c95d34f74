import doctest

import numpy as np
import pytest
import torch

from nerfsculpt import latents
from nerfsculpt.latents import parse_seeds, z_from_seed, z_from_seeds


def test_doctests():
    assert doctest.testmod(latents).failed == 0


def test_z_from_seed_is_numpy_randomstate_cast_to_float32():
    z = z_from_seed(42)
    assert z.shape == (1, 512) and z.dtype == torch.float32
    expected = np.random.RandomState(42).randn(1, 512).astype(np.float32)
    assert np.array_equal(z.numpy(), expected)


def test_z_known_value():
    # First standard normal of numpy's MT19937 with seed 0 (Box-Muller legacy generator).
    assert z_from_seed(0)[0, 0].item() == pytest.approx(1.764052345967664, rel=1e-7)


def test_z_from_seeds_rows_do_not_depend_on_the_batch():
    z = z_from_seeds([5, 7, 5000], z_dim=16)
    assert z.shape == (3, 16)
    assert torch.equal(z[1], z_from_seed(7, z_dim=16)[0])
    # Not RandomState(5).randn(3, 16): rows 1.. of that are other latents.
    assert not torch.equal(z[1], torch.from_numpy(np.random.RandomState(5).randn(3, 16)[1]).float())


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, True])
def test_z_bad_seed(bad):
    with pytest.raises((ValueError, TypeError), match="seed"):
        z_from_seed(bad)


def test_z_from_no_seeds():
    with pytest.raises(ValueError, match="at least one seed"):
        z_from_seeds([])


def test_parse_seeds_ranges_and_order():
    seeds = parse_seeds("20000-20099,5,7-9")
    assert seeds[:2] == [20000, 20001] and seeds[99] == 20099
    assert seeds[100:] == [5, 7, 8, 9] and len(seeds) == 104
    assert parse_seeds(" 3 , 1-1 ") == [3, 1]
    assert parse_seeds(str(2**32 - 1)) == [2**32 - 1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no seeds"),
        ("  ", "no seeds"),
        ("1,,2", "bad seed item"),
        ("-5", "bad seed item"),
        ("3--1", "bad seed item"),
        ("a-b", "bad seed item"),
        ("1.5", "bad seed item"),
        ("9-7", "reversed"),
        ("4294967296", "2\\*\\*32"),
        ("4294967290-4294967299", "2\\*\\*32"),
        ("1-3,2", "more than once"),
    ],
)
def test_parse_seeds_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_ws_from_seeds_maps_each_seed_at_the_canonical_camera():
    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.latents import ws_from_seeds

    G, _ = resolve_generator("tiny-random")
    ws = ws_from_seeds(G, [3, 4], psi=0.5, cutoff=2)
    expected = G.mapping(z_from_seeds([3, 4], G.z_dim), canonical_camera().expand(2, -1), truncation_psi=0.5,
                         truncation_cutoff=2)
    torch.testing.assert_close(ws, expected)
    assert ws.shape == (2, G.num_ws, G.w_dim)
