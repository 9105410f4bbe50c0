"""The analytic companion of chapter 4: the KL-regularised optimum over formats, and the
format choice alone as a bandit trained by three optimisers, each with its oracle path.

For a policy :math:`p=\\mathrm{softmax}(\\theta)` over formats with expected rewards
:math:`r_j` (a format's accuracy), the KL-regularised objective
:math:`J=\\sum_j p_j r_j-\\beta\\,\\mathrm{KL}(p\\,\\|\\,p_{\\mathrm{ref}})` has the logit
gradient :math:`\\partial J/\\partial\\theta_j=p_j(\\tilde r_j-\\bar{\\tilde r})` with the shaped
reward :math:`\\tilde r_j=r_j-\\beta\\log(p_j/p_{\\mathrm{ref},j})` and
:math:`\\bar{\\tilde r}=\\sum_k p_k\\tilde r_k`. Its maximiser is
:math:`p^*\\propto p_{\\mathrm{ref}}e^{r/\\beta}` (``korbak2022kl``), but how a policy gets there
depends on the optimiser:

* **vanilla policy gradient** (SGD on the logits, learning rate :math:`\\eta`) follows,
  with :math:`d_j=\\tilde r_j-\\bar{\\tilde r}`,
  :math:`\\dot p_j=\\eta\\,p_j\\bigl(p_j d_j-\\sum_k p_k^2 d_k\\bigr)`
  (the chain rule through the softmax Jacobian :math:`\\mathrm{diag}(p)-pp^\\top`; *not* the
  replicator equation): a rare format moves with its squared share, so it is slow to grow
  and slow to die (``mei2020softmax``);
* **natural policy gradient** (the gradient preconditioned by the softmax Fisher matrix,
  :math:`\\Delta\\theta=\\eta(\\tilde r-\\bar{\\tilde r})`, ``kakade2001natural``) is
  exponential weights / Hedge (``freund1997hedge``): with :math:`\\beta=0`,
  :math:`p(t)\\propto p_{\\mathrm{ref}}e^{\\eta t r}`, and with :math:`\\beta>0` exactly
  :math:`p_t\\propto p_{\\mathrm{ref}}\\exp\\bigl(r\\,(1-(1-\\eta\\beta)^t)/\\beta\\bigr)` — the
  KL optimum at the effective strength :math:`\\beta/(1-(1-\\eta\\beta)^t)`, so every
  point of the path is an optimum (:func:`exponential_weights`);
* **Adam** normalises each logit's step: its first step is :math:`\\eta\\,\\mathrm{sign}(g)`
  and, while the gradient's sign holds, the logits move linearly in time whatever the
  shares (:func:`adam_flow`, the deterministic iteration on the exact gradient).

All three have the fixed point :math:`p^*`. :func:`bandit_pg` trains independent chains
of the bandit with sampled formats and Bernoulli rewards through the library's RL loss
(:func:`vanishing_tails.core.rl.kl_shaped_advantages`,
:func:`vanishing_tails.core.rl.policy_gradient_loss`), whose expected gradient is
:math:`(1-1/D)\\nabla J` for ``draws`` :math:`D` (the group mean includes the sample itself);
the unit tests check each optimiser's chains against its oracle path on fresh seeds.

Explained in :ref:`sec-formats-analytic`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.integrate import solve_ivp

from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.optim import Adam
from vanishing_tails.core.rl import kl_regularised_optimum, kl_shaped_advantages, policy_gradient_loss

from . import vocab

OPTIMISERS = ("sgd", "adam", "natural")
ADAM_BETAS = (0.9, 0.999)  # torch's defaults, used by the chapter's RL
ADAM_EPS = 1e-8


# ---------------------------------------------------------------------- the optimum
def format_optimum(p_ref: np.ndarray, accuracy: np.ndarray, beta: float, *, within_format: bool = True) -> np.ndarray:
    """Format shares of the KL-regularised optimum pi* ∝ pi_ref exp(r / beta) (``korbak2022kl``).

    ``p_ref`` [..., F] are the reference model's format shares and ``accuracy`` [..., F]
    its accuracy within each format (reward 1 if correct); leading axes (e.g. prompts)
    are kept, so the optimum can be taken per prompt and averaged after.

    * ``within_format=False`` — the formats are arms with reward r_j = accuracy_j and
      the policy only picks the arm: p*_j ∝ p_ref,j exp(r_j / beta) (the form the notes
      quote; also a point of the natural-gradient / exponential-weights path,
      :func:`exponential_weights`).
    * ``within_format=True`` — the optimum over whole sequences, which may also move mass
      to the correct answers inside a format: summing pi_ref e^{r/beta} over the correct
      (r=1) and wrong (r=0) sequences of format j gives
      p*_j ∝ p_ref,j (1 - a_j + a_j e^{1/beta}).

    Both come from :func:`vanishing_tails.core.rl.kl_regularised_optimum`.
    Explained in :ref:`sec-formats-analytic`.
    """
    beta = check_beta(beta, allow_inf=True)
    p_ref = np.asarray(p_ref, dtype=float)
    a = np.clip(np.asarray(accuracy, dtype=float), 0.0, 1.0)
    if not within_format:
        return kl_regularised_optimum(p_ref, a, beta)
    outcomes = np.concatenate([p_ref * a, p_ref * (1 - a)], axis=-1)  # (format, correct) then (format, wrong)
    reward = np.concatenate([np.ones_like(a), np.zeros_like(a)], axis=-1)
    p = kl_regularised_optimum(outcomes, reward, beta)
    F_ = p_ref.shape[-1]
    return p[..., :F_] + p[..., F_:]


# ---------------------------------------------------------------------- the oracle paths
def _check_bandit(p_ref, reward) -> tuple[np.ndarray, np.ndarray]:
    p_ref = np.asarray(p_ref, dtype=float)
    if p_ref.ndim != 1 or np.any(p_ref <= 0) or abs(p_ref.sum() - 1) > 1e-6:
        raise ValueError(f"p_ref must be a positive probability vector, got {p_ref}")
    r = np.asarray(reward, dtype=float)
    if r.shape != p_ref.shape or not np.all(np.isfinite(r)):
        raise ValueError(f"reward (accuracy) must be finite, one per arm; got {r}")
    return p_ref, r


def objective_gradient(p: np.ndarray, p_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """∂J/∂θ_j = p_j (r̃_j − Σ_k p_k r̃_k), r̃ = r − β log(p / p_ref): the logit gradient of
    E_p[r] − β KL(p ‖ p_ref) for p = softmax(θ) (rows of ``p``). Explained in :ref:`sec-formats-analytic`.
    """
    shaped = reward - beta * (np.log(p) - np.log(p_ref))
    return p * (shaped - np.sum(p * shaped, axis=-1, keepdims=True))


def softmax_pg_rate(p: np.ndarray, p_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """dp/dt of vanilla policy gradient on softmax logits per unit learning rate:
    ṗ_j = p_j (p_j (r̃_j − r̄̃) − Σ_k p_k² (r̃_k − r̄̃)) (``mei2020softmax``; with β = 0, r̃ = r).

    Written in the shares alone (not through the logits), so that it checks the logit
    iteration independently. Explained in :ref:`sec-formats-analytic`.
    """
    shaped = reward - beta * (np.log(p) - np.log(p_ref))
    d = shaped - np.sum(p * shaped, axis=-1, keepdims=True)
    return p * (p * d - np.sum(p**2 * d, axis=-1, keepdims=True))


def softmax_pg_path(p_ref, reward, beta: float, *, times: np.ndarray) -> np.ndarray:
    """The shares along the vanilla-policy-gradient flow (:func:`softmax_pg_rate`) at
    ``times`` (= learning rate x steps), integrated in the shares with an adaptive
    Runge-Kutta method from p(0) = ``p_ref``; shape ``[len(times), F]``.
    Explained in :ref:`sec-formats-analytic`.
    """
    p_ref, r = _check_bandit(p_ref, reward)
    beta = float(beta)
    times = np.asarray(times, dtype=float)
    sol = solve_ivp(
        lambda t, p: softmax_pg_rate(np.clip(p, 1e-300, None), p_ref, r, beta),
        (0.0, float(times.max())),
        p_ref,
        t_eval=times,
        rtol=1e-8,
        atol=1e-10,
    )
    p = np.clip(sol.y.T, 0.0, None)
    return p / p.sum(-1, keepdims=True)


def exponential_weights(p_ref, reward, beta: float, *, lr: float, steps: np.ndarray) -> np.ndarray:
    """The natural-policy-gradient path in closed form: p_t ∝ p_ref exp(r w_t) with
    w_t = (1 − (1 − lr β)^t) / β (w_t = lr t at β = 0: Hedge, ``freund1997hedge``); each
    point is the KL optimum at strength 1 / w_t. Shape ``[len(steps), F]``.
    Explained in :ref:`sec-formats-analytic`.
    """
    p_ref, r = _check_bandit(p_ref, reward)
    t = np.asarray(steps, dtype=float)[:, None]
    w = lr * t if beta == 0 else (1.0 - (1.0 - lr * beta) ** t) / beta
    logits = np.log(p_ref) + r * w
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def adam_flow(p_ref, reward, beta: float, *, lr: float, steps: int) -> np.ndarray:
    """Adam (``kingma2015adam``; β1, β2 = :data:`ADAM_BETAS`, bias-corrected) on the exact
    gradient of J, written out in numpy: the deterministic path of the Adam bandit.
    Shares at steps 0..``steps``, shape ``[steps + 1, F]``. Explained in :ref:`sec-formats-analytic`.
    """
    p_ref, r = _check_bandit(p_ref, reward)
    b1, b2 = ADAM_BETAS
    theta = np.log(p_ref)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = np.empty((steps + 1, len(p_ref)))
    out[0] = p_ref
    for t in range(1, steps + 1):  # a loop over time: each step needs the previous one
        p = np.exp(theta - theta.max())
        p /= p.sum()
        g = -objective_gradient(p, p_ref, r, beta)  # the loss's gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + ADAM_EPS)
        e = np.exp(theta - theta.max())
        out[t] = e / e.sum()
    return out


# ---------------------------------------------------------------------- the simulated bandit
def bandit_pg(
    p_ref: np.ndarray,
    accuracy: np.ndarray,
    beta: float,
    *,
    optimiser: str,
    steps: int,
    lr: float,
    draws: int,
    n_chains: int,
    seed: int,
) -> pd.DataFrame:
    """The format choice alone as a bandit, trained with the chapter's RL loss.

    ``n_chains`` independent policies softmax(theta) over formats (one tensor), each
    started at ``p_ref``. Each step every chain draws ``draws`` formats and a
    Bernoulli(accuracy_j) reward for each, and takes one step on
    :func:`~vanishing_tails.core.rl.policy_gradient_loss` of the KL-shaped, group-centred
    advantages, with ``optimiser``: ``"sgd"`` (vanilla policy gradient), ``"adam"``
    (torch's Adam) or ``"natural"`` (the gradient divided by the shares — the softmax
    Fisher matrix's pseudo-inverse applied to a gradient that sums to 0 — then an SGD
    step), at a constant learning rate ``lr``. The fixed point of all three is
    ``format_optimum(p_ref, accuracy, beta, within_format=False)``; their paths are
    :func:`softmax_pg_path`, :func:`adam_flow` and :func:`exponential_weights` (tested).
    Returns the shares in long form: ``chain``, ``step``, ``format``, ``share``.
    Explained in :ref:`sec-formats-analytic`.
    """
    beta = check_beta(beta)
    p_ref, acc = _check_bandit(p_ref, accuracy)
    if np.any((acc < 0) | (acc > 1)):
        raise ValueError(f"accuracy must be in [0, 1], one per arm; got {acc}")
    if optimiser not in OPTIMISERS:
        raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
    if steps < 1 or draws < 2 or n_chains < 1 or not lr > 0:
        raise ValueError(
            f"need steps >= 1, draws >= 2, n_chains >= 1 and lr > 0; got {steps}, {draws}, {n_chains}, {lr}"
        )
    C, F_ = n_chains, len(p_ref)
    gen = torch.Generator().manual_seed(seed)
    log_ref = torch.log(torch.as_tensor(p_ref, dtype=torch.float64)).expand(C, F_)
    theta = log_ref.clone().requires_grad_(True)
    # the core Adam is torch's arithmetic without torch.optim's compiler import (seconds per process)
    adam = Adam([theta], lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS) if optimiser == "adam" else None
    acc_t = torch.as_tensor(acc, dtype=torch.float64)
    shares = np.empty((steps + 1, C, F_))
    shares[0] = p_ref
    for t in range(steps):  # a loop over time; the chains are one tensor
        logp_all = torch.log_softmax(theta, -1)
        probs = logp_all.exp().detach()
        arm = torch.multinomial(probs, draws, replacement=True, generator=gen)  # [C, D]
        r = (torch.rand(C, draws, generator=gen, dtype=torch.float64) < acc_t[arm]).double()
        logp = logp_all.gather(1, arm).unsqueeze(1)  # [C, 1, D]: one group per chain
        adv, _ = kl_shaped_advantages(logp, log_ref.gather(1, arm).unsqueeze(1), r.unsqueeze(1), beta)
        theta.grad = None
        policy_gradient_loss(logp, adv).sum().backward()
        if optimiser == "natural":
            theta.grad.div_(probs)
        if adam is not None:
            adam.step()
        else:  # plain SGD, torch.optim.SGD's arithmetic
            with torch.no_grad():
                theta.add_(theta.grad, alpha=-lr)
        shares[t + 1] = torch.softmax(theta.detach(), -1).numpy()
    labels = np.array(vocab.FORMATS if F_ == len(vocab.FORMATS) else [str(i) for i in range(F_)])
    return pd.DataFrame(
        {
            "chain": np.tile(np.repeat(np.arange(C), F_), steps + 1),
            "step": np.repeat(np.arange(steps + 1), C * F_),
            "format": np.tile(labels, (steps + 1) * C),
            "share": shares.ravel(),
        }
    )
