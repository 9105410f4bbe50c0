"""One step-by-step Adam for the book's small batched models (chapters 2 to 6), and gradient
clipping per replica of a stack (chapters 4 and 5).

``torch.optim`` imports the ``torch._dynamo`` compiler machinery on first use, which costs
seconds of CPU per process at the smoke scale; :class:`Adam` is the same arithmetic written
out. Explained in :ref:`sec-families-loop`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["Adam", "clip_grad_norm_per_replica"]


@torch.no_grad()
def clip_grad_norm_per_replica(params: Iterable[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` for every replica of a stack on its own: with the
    replicas on the leading axis of every parameter, replica m's gradient is scaled by
    min(1, max_norm / (‖g_m‖ + 1e-6)), ‖g_m‖ its norm over all parameters (a test checks it
    against ``clip_grad_norm_`` of each replica alone). Parameters without a gradient are
    skipped. Explained in :ref:`sec-formats-pretraining`.
    """
    grads = [p.grad for p in params if p.grad is not None]
    sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    scale = torch.clamp(max_norm / (sq.sqrt() + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.ndim - 1)))


class Adam:
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization"; ``kingma2015adam``)
    without weight decay: per parameter, with gradient g at step t,

    m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²,  θ ← θ − lr m̂ / (√v̂ + ε),
    m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t).

    The arithmetic of ``torch.optim.Adam``'s default single-tensor path on the CPU, operation
    for operation (tests check the trajectories are identical), without its per-step dispatch
    and the compiler machinery it imports on first use. Elementwise, so a stack of replicas
    (a leading replica axis) keeps one set of moments per replica. A parameter whose
    ``.grad`` is None is skipped. Explained in :ref:`sec-families-loop`.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if not lr >= 0:
            raise ValueError(f"the learning rate lr must be >= 0, got {lr!r}")
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter from its ``.grad``."""
        self.t += 1
        step = float(self.t)
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1**step)
        bias_correction2_sqrt = (1 - b2**step) ** 0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            if g is None:
                continue
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)
