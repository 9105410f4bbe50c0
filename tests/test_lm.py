"""The shared language models: incremental decoding equals the full forward pass; sampling contracts."""

from __future__ import annotations

import pytest
import torch

from vanishing_tails.core import lm


@pytest.mark.parametrize(
    "arch,sizes",
    [("transformer", dict(d_model=32, n_layers=2, n_heads=4, max_len=24)), ("gru", dict(d_hidden=32, n_layers=2))],
)
def test_incremental_logits_equal_the_full_forward_pass(arch, sizes):
    model = lm.build_model(arch, 11, seed=3, **sizes).eval()
    tokens = torch.randint(0, 11, (5, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(tokens)
        logits, state = model.init_state(tokens[:, :4])
        steps = [logits]
        for t in range(4, 20):
            logits, state = model.step(tokens[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T,S", [(7, 7), (5, 12), (1, 9)])
def test_stack_attention_equals_the_fused_kernel(T, S):
    """The Stack's batched-product attention (lm._attention) against torch's fused kernel:
    values and gradients, with a causal mask over cached positions and without a mask."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(6, 4, n, 8, generator=g, requires_grad=True) for n in (T, S, S))
    for mask in (lm._causal(T, S, "cpu"), None):
        ours = lm._attention(q, k, v, mask)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
        w = torch.randn(ours.shape, generator=g)
        ours_grad = torch.autograd.grad((ours * w).sum(), (q, k, v))
        for a, b in zip(ours_grad, torch.autograd.grad((ref * w).sum(), (q, k, v))):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_stack_gradients_do_not_depend_on_the_thread_count():
    """A Stack trained with one thread (the book build) and with two (a chapter run alone) gets
    the same gradients, bit for bit: torch's softmax backward would not give them (lm._Softmax)."""
    # large enough for torch to split the softmax rows between two threads (16 sequences of 9
    # tokens are not: there torch's own backward passes too)
    tokens = torch.randint(0, 13, (2, 64, 18), generator=torch.Generator().manual_seed(1))
    states = [lm.build_model("transformer", 13, seed=s, d_model=32, n_layers=2, n_heads=4, max_len=18).state_dict()
              for s in range(2)]  # fmt: skip
    before, grads = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            stack = lm.Stack.from_state_dicts(states, lm.StackSize(2, 4)).take(range(2), trainable=True)
            logits = stack.logits(tokens[..., :-1])
            torch.nn.functional.cross_entropy(logits.flatten(0, 2), tokens[..., 1:].flatten()).backward()
            grads.append([p.grad for p in stack.parameters()])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_sample_is_deterministic_pads_after_eos_and_respects_max_len():
    model = lm.build_model("transformer", 9, seed=1, d_model=16, n_layers=1, n_heads=2, max_len=12)
    prefix = torch.full((64, 2), 1)
    a = lm.sample(model, prefix, 10, generator=torch.Generator().manual_seed(7))
    b = lm.sample(model, prefix, 10, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (64, 12)
    for row in a:
        eos = (row == 2).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1 :] == 0).all()
    with pytest.raises(ValueError, match="max_len"):  # a prefix longer than the model's positions
        model.init_state(torch.ones((1, 13), dtype=torch.long))
    _, state = model.init_state(torch.ones((1, 12), dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):  # no position left for one more token
        model.step(torch.ones(1, dtype=torch.long), state)
    with pytest.raises(ValueError, match="temperature"):
        lm.sample(model, prefix, 3, generator=torch.Generator(), temperature=0.0)


def test_vocab_round_trip_and_unknown_tokens():
    v = lm.Vocab.from_texts(["to be", "or not"], level="word")
    ids = v.encode("to be or not")
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id and v.decode(ids) == "to be or not"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.encode("to see")
