"""Named seed streams: a stream depends on the master seed and its name, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from vanishing_tails.core.seeds import Streams, streams


def test_same_name_same_stream_and_names_differ():
    a, b = streams(7), streams(7)
    assert a["words"] == b["words"]
    assert a["gauss", 10, "mle"] == b["gauss", 10, "mle"]
    assert np.array_equal(a.rng("vae").random(5), b.rng("vae").random(5))
    keys = ["words", "vae", ("gauss", 10, "mle"), ("gauss", 10, "unbiased"), ("gauss", 100, "mle"), ("words", 1)]
    values = [a[k] for k in keys]
    assert len(set(values)) == len(values)
    assert streams(8)["words"] != a["words"]
    assert a["words"] == a[("words",)]  # a bare name is a one-part key


def test_reordering_or_adding_experiments_changes_no_other_stream():
    first = streams(3)
    order_a = {k: first[k] for k in ["mixture", "vae", "charlm"]}
    second = streams(3)
    _ = second["a new experiment"]  # added before the others
    order_b = {k: second[k] for k in ["charlm", "vae", "mixture"]}
    assert order_a == order_b


def test_int_and_float_parts_are_distinguished_and_numpy_scalars_match_python():
    s = streams(0)
    assert s["n", 1] != s["n", 1.0] != s["n", "1"]
    assert s["n", np.int64(5)] == s["n", 5] and s["q", np.float64(0.1)] == s["q", 0.1]


def test_seeds_are_python_ints_usable_everywhere():
    v = streams(1)["x"]
    assert isinstance(v, int) and 0 <= v < 2**63
    np.random.default_rng(v)
    import torch

    torch.Generator().manual_seed(v)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_bad_master_seed_is_refused(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        Streams(bad)


def test_bad_keys_are_refused():
    with pytest.raises(TypeError):
        streams(0)["x", [1, 2]]
    with pytest.raises(ValueError):
        streams(0)[()]
