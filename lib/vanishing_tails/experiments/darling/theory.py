"""The fixed point of GRPO under DARLING's reward, and of its rivals (chapter 8).

Take one prompt, a policy ``pi`` over outputs y with quality ``q(y)`` and semantic class
``c(y)``, class masses ``p_c = sum_{y in c} pi(y)`` and valid class masses
``Q_c = sum_{y in c} pi(y) q(y)``. Draw a group of G outputs from ``pi``; sample i gets
the reward ``r_i`` and the group-centred advantage ``A_i = r_i - mean_j r_j`` (DARLING
drops the standard-deviation normalisation). For a softmax policy the expected update of
the logit of y under the GRPO surrogate is

    E[(1/G) sum_i A_i (1[y_i = y] - pi(y))] = pi(y) E[A_1 | y_1 = y]
                                          = (G - 1)/G * pi(y) * (f(y) - fbar),

with the *fitness* ``f(y) = E[r_1 | y_1 = y] - E[r_2 | y_1 = y]`` up to a constant:
the reward y earns itself, minus what its presence does to the rewards of the others,
which enter the baseline. For the three rewards:

* quality only, ``r = q``: ``f(y) = q(y)``;
* DARLING, ``r = q d`` with ``d_i`` the share of the other G - 1 samples outside i's class:
  ``E[d | y] = 1 - p_c`` exactly, and y in class c takes diversity away from the other
  samples only if they are in c, so ``f(y) = q(y) (1 - p_c) + Q_c / (G - 1)``;
* additive, ``r = q + lam d``: ``f(y) = q(y) + lam (G - 2)/(G - 1) (1 - p_c)``.

The ``Q_c / (G - 1)`` and ``(G - 2)/(G - 1)`` terms are the finite-group correction: they
vanish as G grows. With the KL-shaped reward ``r - beta log(pi / pi_ref)`` the stationary
points are where ``f(y) - beta log(pi(y) / pi_ref(y))`` is the same for every y:

    pi*(y) = pi_ref(y) exp(f(y; pi*) / beta) / Z,

a self-consistent tilt of the reference (for quality only it is the KL-regularised optimum
``pi_ref e^{q / beta}``). Because f depends on y only through (q(y), c(y)), the fixed point
is a small system in the class masses, solved here by damped iteration. For DARLING the
fitness falls with the class's own mass — crowded classes pay less — which is what makes the
fixed point unique and spreads it over the valid classes; as beta -> 0 with binary quality
every valid class gets the same share and the invalid ones die.
"""

from __future__ import annotations

import numpy as np

from vanishing_tails.core.checks import check_beta

COMBINES = ("quality", "multiply", "add")


def _check(combine: str, group_size: int) -> None:
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}; got {combine!r}")
    if group_size < 2:
        raise ValueError(f"parameter 'group_size' must be >= 2; got {group_size}")


def fitness(probs: np.ndarray, quality: np.ndarray, classes: np.ndarray, *, combine: str, group_size: int,
            additive_weight: float) -> np.ndarray:  # fmt: skip
    """The fitness ``f(y)`` of every output under policy ``probs[..., N]`` (module docstring).

    ``quality[..., N]`` in [0, 1], ``classes[N]`` integer class ids.
    Explained in :ref:`sec-darling-theory`.
    """
    _check(combine, group_size)
    q = np.broadcast_to(np.asarray(quality, dtype=float), probs.shape)
    if combine == "quality":
        return q.copy()
    k = int(classes.max()) + 1
    onehot = np.eye(k)[classes]
    p_c = (probs @ onehot) @ onehot.T  # each output's class mass
    G = group_size
    if combine == "multiply":
        Q_c = ((probs * q) @ onehot) @ onehot.T
        return q * (1 - p_c) + Q_c / (G - 1)
    return q + additive_weight * (G - 2) / (G - 1) * (1 - p_c)


def expected_update(probs: np.ndarray, reference: np.ndarray, quality: np.ndarray, classes: np.ndarray, *,
                    combine: str, group_size: int, additive_weight: float, beta: float) -> np.ndarray:  # fmt: skip
    """Expected GRPO update of the logits, ``(G - 1)/G * pi * (g - E_pi g)`` with
    ``g = f - beta log(pi / pi_ref)`` (zero at the fixed point). ``beta = 0``: no KL term.

    Explained in :ref:`sec-darling-theory`.
    """
    g = fitness(probs, quality, classes, combine=combine, group_size=group_size, additive_weight=additive_weight)
    if beta > 0:
        g = g - beta * (np.log(probs) - np.log(reference))
    gbar = (probs * g).sum(-1, keepdims=True)
    return (group_size - 1) / group_size * probs * (g - gbar)


def fixed_point(
    reference: np.ndarray,
    quality: np.ndarray,
    classes: np.ndarray,
    *,
    combine: str,
    group_size: int,
    additive_weight: float,
    beta: float,
    tol: float = 1e-12,
    max_iter: int = 200000,
) -> np.ndarray:
    """The stationary policy ``pi* = pi_ref exp(f(pi*) / beta) / Z`` for every row of ``reference[..., N]``.

    Damped fixed-point iteration on the policy (the damping halves whenever a step does not
    shrink the residual); raises if it does not converge to ``tol`` (max abs change). The
    fitness falls with a class's own mass, so the map can overshoot: small ``beta`` needs
    heavy damping and many iterations.
    Explained in :ref:`sec-darling-theory`.
    """
    beta = check_beta(beta)
    ref = np.asarray(reference, dtype=float)
    pi = ref.copy()
    log_ref = np.log(ref)
    alpha, last = 1.0, np.inf
    for _ in range(max_iter):
        f = fitness(pi, quality, classes, combine=combine, group_size=group_size, additive_weight=additive_weight)
        logits = log_ref + f / beta
        new = np.exp(logits - logits.max(-1, keepdims=True))
        new /= new.sum(-1, keepdims=True)
        change = np.abs(new - pi).max()
        if change < tol:
            return new
        if change >= 0.999 * last:  # not contracting (an overshoot or a 2-cycle): damp harder
            alpha = max(alpha / 2, 1e-6)
        last = change
        pi = (1 - alpha) * pi + alpha * new
    raise RuntimeError(f"the fixed point did not converge (last change {last:.2e}); try a larger beta")


def class_shares(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Mass of every class, ``[..., n_classes]``.

    Explained in :ref:`sec-darling-theory`.
    """
    return probs @ np.eye(n_classes)[classes]


def zero_beta_shares(valid: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """The beta -> 0 fixed point of DARLING's reward with binary quality, as class shares:
    every class holding a valid output gets the same share, 1 / (number of such classes), and
    the invalid mass dies; ``valid[..., N]`` bool -> ``[..., n_classes]``.

    Explained in :ref:`sec-darling-theory`.
    """
    has_valid = (np.asarray(valid, dtype=float) @ np.eye(n_classes)[classes]) > 0
    return has_valid / has_valid.sum(-1, keepdims=True)
