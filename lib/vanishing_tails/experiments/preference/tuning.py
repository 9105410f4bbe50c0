"""Preference tuning (DPO) against two judges, and what it does to diversity (chapter 5).

Chapter 5, "What the reward pays for", tunes one small reference language model with
Direct Preference Optimisation (Rafailov et al. 2023, ``rafailov2023dpo``) in two toy
domains (``vanishing_tails.core.domains``: tiny programs and one-line poems) against two
judges, and measures lexical, syntactic, semantic and *effective* semantic diversity
(Shypula et al. 2025, ``shypula2025diversity``) before and after.

The pieces, bottom to top:

* **Judges** (:func:`judge_scores`, :func:`judge_rewards`). ``"correct"`` — the convergent
  judge: score ``s(y) = 1[y valid] - brevity * len(y)`` (prefers a program that returns
  the asked value, or a line on topic; with ``brevity`` = c > 0 near-ties go to the shorter
  one, with c = 0, the chapter's main arm, every valid output ties). ``"distinct"`` —
  the distinctiveness judge: ``s(y)`` = mean surprisal ``-log q_ref(g)`` of the output's
  1- and 2-grams ``g`` under the reference model's expected n-gram distribution for that
  prompt (rare n-grams win). Rewards are the scores standardised under the reference
  model for each prompt, ``r = (s - E_ref s) / sd_ref s``, and a judge prefers ``y1`` over
  ``y2`` with Bradley–Terry probability ``sigma(r(y1) - r(y2))``.
* **Pairs** (:func:`preference_pairs`): both responses drawn from the reference model,
  labelled by the judge — offline DPO, as in the original paper.
* **The DPO loss** (:func:`dpo_loss`), written out:
  ``L = -log sigma(beta [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])``,
  and the loop (:func:`train_dpo`) against a frozen reference copy.
* **Theory** (:func:`optimum_curve`): with Bradley–Terry labels, the population DPO loss
  is minimised by the KL-regularised optimum ``p* ∝ p_ref exp(r / beta)``
  (``rl.kl_regularised_optimum``; Korbak et al. 2022, ``korbak2022kl``). The output
  space is enumerable, so ``p*``'s entropy, pass rate and n-gram entropy are exact.
* **The mixed reward** (:func:`mixed_reward`, :func:`critical_lambda`, :func:`phase_diagram`):
  ``r_λ = (1 − λ) r_conv + λ r_dist`` and the exact weight λ*(β) at which the bigram entropy
  of p*_{β,λ} stops falling and starts rising.
* **The common tail measures** (:func:`trajectory`) along DPO training, for chapter 10.
* **Measurements** (:func:`sample_metrics`, :func:`exact_metrics`) and the whole
  experiment (:func:`run_experiment`): several independently pretrained reference models
  (the unit of replication), each tuned once per (domain, judge) arm, returning tidy frames.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import special
from torch.nn import functional as F

from vanishing_tails.core import lm, metrics, tails
from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.domains import DOMAINS, Domain, make_domain
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.core.seeds import streams

from .spec import JUDGES
from .stacked import chunk_rows, dpo_stacked, pretrain_stacked, stacked_logprobs

SEP = ":"


def check_judge(judge: str) -> str:
    """``judge`` if it is one of ``JUDGES`` (``"correct"``, ``"distinct"``), else ValueError.

    Explained in :ref:`sec-preference-setup`.
    """
    if judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}; got {judge!r}")
    return judge


# ------------------------------------------------------------------ n-grams & judges


def _grams(text: str) -> list[tuple[str, ...]]:
    toks = text.split()
    return [(t,) for t in toks] + [tuple(toks[i : i + 2]) for i in range(len(toks) - 1)]


@dataclass(frozen=True)
class GramTable:
    """Counts of each output's 1- and 2-grams, ``counts[output, gram]`` (dense); ``order[gram]`` is n.

    Explained in :ref:`sec-preference-setup`.
    """

    grams: tuple[tuple[str, ...], ...]
    counts: np.ndarray
    order: np.ndarray

    @classmethod
    def of(cls, outputs: tuple[str, ...]) -> GramTable:
        per = [_grams(o) for o in outputs]
        grams = tuple(sorted({g for gs in per for g in gs}))
        idx = {g: i for i, g in enumerate(grams)}
        counts = np.zeros((len(outputs), len(grams)))
        for r, gs in enumerate(per):
            for g in gs:
                counts[r, idx[g]] += 1
        return cls(grams, counts, np.array([len(g) for g in grams]))

    def expected_distribution(self, p: np.ndarray, n: int | None = None) -> np.ndarray:
        """Pooled n-gram distribution of samples from ``p`` (``[..., outputs]``): E counts / E total.

        ``n=None`` pools 1- and 2-grams; ``n=2`` keeps the bigrams only (the population
        value of ``metrics.ngram_entropy(texts, 2)``).
        """
        counts = self.counts if n is None else self.counts[:, self.order == n]
        m = p @ counts
        return m / np.maximum(m.sum(axis=-1, keepdims=True), 1e-300)  # all-zero row: no n-grams


_GRAM_CACHE: dict[str, GramTable] = {}


def gram_table(domain: Domain) -> GramTable:
    """The :class:`GramTable` of a domain's output space (cached per domain name and size).

    Explained in :ref:`sec-preference-setup`.
    """
    if domain.name not in _GRAM_CACHE or len(_GRAM_CACHE[domain.name].counts) != domain.n_outputs:
        _GRAM_CACHE[domain.name] = GramTable.of(domain.outputs)
    return _GRAM_CACHE[domain.name]


def check_brevity(brevity: float) -> float:
    """The convergent judge's cost per token ``c``: a finite number >= 0 (0: validity alone).

    Explained in :ref:`sec-preference-setup`.
    """
    if isinstance(brevity, bool) or not (
        isinstance(brevity, (int, float, np.integer, np.floating)) and np.isfinite(brevity) and brevity >= 0
    ):
        raise ValueError(f"parameter 'brevity' must be a finite number >= 0; got {brevity!r}")
    return float(brevity)


def judge_scores(domain: Domain, judge: str, p_ref: np.ndarray, *, brevity: float) -> np.ndarray:
    """Raw judge scores ``s[prompt, output]`` (see the module docstring).

    ``brevity`` is the convergent judge's cost ``c`` per token (0: validity alone, every
    valid output tied; the distinctiveness judge ignores it).

    ``p_ref`` ``[prompts, outputs]`` is the reference model's distribution; the
    distinctiveness judge measures rarity against it (Li et al. 2025 reward semantic
    distinctiveness within a group instead; here it is against the reference so that the
    reward is fixed and the optimum exact).
    Explained in :ref:`sec-preference-setup`.
    """
    check_judge(judge)
    brevity = check_brevity(brevity)
    if judge == "correct":
        return domain.valid.astype(float) - brevity * domain.length[None, :]
    table = gram_table(domain)
    q = table.expected_distribution(p_ref)  # [P, G]
    surprisal = -np.log(np.maximum(q, 1e-12))  # [P, G]
    return (surprisal @ table.counts.T) / table.counts.sum(axis=1)[None, :]


def judge_rewards(domain: Domain, judge: str, p_ref: np.ndarray, *, brevity: float) -> np.ndarray:
    """Scores standardised under ``p_ref`` for each prompt: ``(s - E_ref s) / sd_ref s``.

    A constant score (standard deviation 0) gives a reward of 0 everywhere.
    Explained in :ref:`sec-preference-setup`.
    """
    s = judge_scores(domain, judge, p_ref, brevity=brevity)
    mean = (p_ref * s).sum(-1, keepdims=True)
    sd = np.sqrt((p_ref * (s - mean) ** 2).sum(-1, keepdims=True))
    return (s - mean) / np.maximum(sd, 1e-12)


# ------------------------------------------------------------ the reference model


def build_vocab(domains: list[Domain]) -> lm.Vocab:
    """The word vocabulary of every prompt and output of ``domains``, plus the separator.

    Explained in :ref:`sec-preference-setup`.
    """
    texts = [t for d in domains for t in (*d.prompts, *d.outputs)]
    return lm.Vocab.from_texts([*texts, SEP], level="word")


def encode_pairs(vocab: lm.Vocab, prompts: list[str], outputs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[B, T]`` of ``BOS prompt : output EOS`` and the mask of the output + EOS positions.

    Explained in :ref:`sec-preference-setup`.
    """
    head = {p: vocab.encode(f"{p} {SEP}", eos=False) for p in set(prompts)}
    tail = {o: vocab.encode(o, bos=False) for o in set(outputs)}
    rows = [head[p] + tail[o] for p, o in zip(prompts, outputs)]
    starts = np.array([len(head[p]) for p in prompts])
    lens = np.array([len(r) for r in rows])
    T = int(lens.max())
    arr = np.zeros((len(rows), T), dtype=np.int64)
    for n in np.unique(lens):  # rows of one length at a time, no per-row tensor copies
        sel = np.flatnonzero(lens == n)
        arr[sel, :n] = np.array([rows[i] for i in sel])
    pos = np.arange(T)[None, :]
    mask = (pos >= starts[:, None]) & (pos < lens[:, None])
    return torch.from_numpy(arr), torch.from_numpy(mask)


def reference_corpus(domains: list[Domain], size: int, *, seed: int) -> list[tuple[str, str]]:
    """``size`` (prompt, output) pairs: prompts uniform over all domains' prompts, outputs from the prior.

    Explained in :ref:`sec-preference-setup`.
    """
    if size < 1:
        raise ValueError(f"corpus_size must be >= 1; got {size}")
    rng = np.random.default_rng(seed)
    keys = [(d, p) for d in domains for p in range(d.n_prompts)]
    which = rng.integers(len(keys), size=size)
    out = []
    for k in np.unique(which):
        d, p = keys[k]
        n = int((which == k).sum())
        ys = rng.choice(d.n_outputs, size=n, p=d.prior[p])
        out.extend((d.prompts[p], d.outputs[y]) for y in ys)
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def reference_start(
    domains: list[Domain], *, corpus_size: int, seed: int, arch: str, device: str, **sizes
) -> tuple[torch.nn.Module, lm.Vocab, torch.Tensor, int]:
    """An untrained reference model, its vocabulary, its pretraining corpus (tokens) and its minibatch seed.

    ``seed`` names one reference model: its corpus draw, its initial weights and its
    minibatches come from named streams of it (:func:`vanishing_tails.core.seeds.streams`).
    Default sizes are small (a GRU with 32-d embeddings and 64 hidden units, or a
    2-layer 32-d transformer); ``sizes`` overrides them.
    Explained in :ref:`sec-preference-setup`.
    """
    seeds = streams(seed)
    vocab = build_vocab(domains)
    corpus = reference_corpus(domains, corpus_size, seed=seeds["corpus"])
    tokens, _ = encode_pairs(vocab, [c[0] for c in corpus], [c[1] for c in corpus])
    if arch == "transformer":
        sizes = {"d_model": 32, "n_layers": 2, "n_heads": 4, "max_len": tokens.shape[1] + 2, **sizes}
    else:
        sizes = {"d_embed": 32, "d_hidden": 64, **sizes}
    model = lm.build_model(arch, len(vocab), seed=seeds["init"], device=device, **sizes)
    return model, vocab, tokens, seeds["batches"]


def pretrain_reference(
    domains: list[Domain],
    *,
    corpus_size: int,
    steps: int,
    seed: int,
    arch: str,
    device: str,
    batch_size: int = 128,
    pretrain_lr: float = 1e-2,
    **sizes,
) -> tuple[torch.nn.Module, lm.Vocab, pd.DataFrame]:
    """The reference policy: ``arch`` from ``lm.build_model`` trained by ``lm.train_lm`` on a corpus.

    The model, corpus and minibatch seed of :func:`reference_start` (``seed`` names one
    reference model). :func:`run_experiment` trains several GRU reference models at once
    (``stacked.pretrain_stacked``), the same computation up to float rounding.
    Explained in :ref:`sec-preference-setup`.
    """
    model, vocab, tokens, batch_seed = reference_start(
        domains, corpus_size=corpus_size, seed=seed, arch=arch, device=device, **sizes
    )
    log = lm.train_lm(model, tokens, steps=steps, batch_size=batch_size, lr=pretrain_lr, seed=batch_seed)
    return model, vocab, log


def space_tokens(vocab: lm.Vocab, domain: Domain) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and output mask (:func:`encode_pairs`) of every (prompt, output), row ``prompt * N + output``.

    Explained in :ref:`sec-preference-setup`.
    """
    prompts = [p for p in domain.prompts for _ in domain.outputs]
    outputs = [o for _ in domain.prompts for o in domain.outputs]
    return encode_pairs(vocab, prompts, outputs)


@torch.no_grad()
def output_logprobs(model: torch.nn.Module, vocab: lm.Vocab, domain: Domain, *, chunk: int = 4096) -> np.ndarray:
    """Exact ``log pi(y | prompt)`` for every prompt and every output of the domain: ``[P, N]``.

    The sum over the space is at most 1: the rest (the *leak*) is the model's mass on
    malformed outputs.
    Explained in :ref:`sec-preference-setup`.
    """
    tokens, mask = space_tokens(vocab, domain)
    device = next(model.parameters()).device
    model.eval()
    out = [
        lm.sequence_logprob(model, tokens[i : i + chunk].to(device), mask[i : i + chunk].to(device)).cpu()
        for i in range(0, len(tokens), chunk)
    ]
    return torch.cat(out).double().numpy().reshape(domain.n_prompts, domain.n_outputs)


def restrict(logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distribution over the enumerated space, leaked mass) from log-probabilities ``[P, N]``.

    Explained in :ref:`sec-preference-setup`.
    """
    m = logp.max(-1, keepdims=True)
    w = np.exp(logp - m)
    inside = w.sum(-1) * np.exp(m[:, 0])
    return w / w.sum(-1, keepdims=True), 1.0 - inside


# ------------------------------------------------------------------ pairs and DPO


def preference_pairs(p_ref: np.ndarray, rewards: np.ndarray, n_pairs: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """Offline preference data: per prompt ``n_pairs`` draws ``y1, y2 ~ p_ref`` labelled by the judge.

    The judge prefers ``y1`` with probability ``sigma(r(y1) - r(y2))`` (Bradley–Terry).
    Pairs of identical outputs carry no preference and are dropped. Returns one row per
    pair: ``prompt, chosen, rejected`` (output indices). A reward of 0 everywhere (a judge
    that prefers nothing) makes every label a coin flip.
    Explained in :ref:`sec-preference-setup`.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1; got {n_pairs}")
    P, N = p_ref.shape
    cdf = np.cumsum(p_ref, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random((2, P, n_pairs))
    y = np.stack([np.minimum((u[k][:, :, None] > cdf[:, None, :]).sum(-1), N - 1) for k in range(2)])
    prompt = np.broadcast_to(np.arange(P)[:, None], (P, n_pairs))
    r1 = np.take_along_axis(rewards, y[0], 1)
    r2 = np.take_along_axis(rewards, y[1], 1)
    first_wins = rng.random((P, n_pairs)) < 1 / (1 + np.exp(-(r1 - r2)))
    chosen = np.where(first_wins, y[0], y[1])
    rejected = np.where(first_wins, y[1], y[0])
    keep = y[0] != y[1]
    return pd.DataFrame({"prompt": prompt[keep], "chosen": chosen[keep], "rejected": rejected[keep]})


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair DPO loss (Rafailov et al. 2023, eq. 7), written out:

    ``-log sigma(beta * ((log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))))``.

    Arguments are sequence log-probabilities ``[B]``; returns ``[B]``. Its population
    minimiser under Bradley–Terry labels with reward ``r`` is ``pi ∝ pi_ref exp(r / beta)``.
    Explained in :ref:`sec-preference-setup`.
    """
    check_beta(beta)
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin)


def train_dpo(
    reference: torch.nn.Module,
    vocab: lm.Vocab,
    domain: Domain,
    pairs: pd.DataFrame,
    *,
    beta: float,
    steps: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    log_every: int = 0,
    callback=None,
    callback_every: int = 0,
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Tune a copy of ``reference`` with DPO on ``pairs``; the reference stays frozen.

    Minibatches of pairs are drawn with replacement by a ``torch.Generator`` seeded with
    ``seed``. Returns the policy and a log frame (``step, loss, reward_margin,
    accuracy``: the mean implicit-reward margin and how often it orders the pair as the
    judge did). ``callback(step, policy)``, if given, is called at step 0 (the reference
    itself) and after every ``callback_every``-th step (and the last), in eval mode.
    Explained in :ref:`sec-preference-setup`.
    """
    check_beta(beta)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps}, {batch_size}")
    if len(pairs) == 0:
        raise ValueError("no preference pairs to train on")
    device = next(reference.parameters()).device
    prompts = [domain.prompts[p] for p in pairs["prompt"]]
    ch, ch_mask = encode_pairs(vocab, prompts, [domain.outputs[i] for i in pairs["chosen"]])
    rj, rj_mask = encode_pairs(vocab, prompts, [domain.outputs[i] for i in pairs["rejected"]])
    T = max(ch.shape[1], rj.shape[1])
    ch, ch_mask, rj, rj_mask = (F.pad(t, (0, T - t.shape[1])) for t in (ch, ch_mask, rj, rj_mask))
    tokens = torch.cat([ch, rj]).to(device)
    masks = torch.cat([ch_mask, rj_mask]).to(device)
    n = len(pairs)
    reference.eval()
    with torch.no_grad():
        ref_lp = torch.cat(
            [lm.sequence_logprob(reference, tokens[i : i + 4096], masks[i : i + 4096]) for i in range(0, 2 * n, 4096)]
        )
    policy = copy.deepcopy(reference)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    log = []

    def call(step: int) -> None:
        policy.eval()
        callback(step, policy)
        policy.train()

    if callback is not None:
        call(0)
    for step in range(1, steps + 1):
        idx = torch.randint(n, (batch_size,), generator=gen).to(device)
        both = torch.cat([idx, idx + n])
        lp = lm.sequence_logprob(policy, tokens[both], masks[both])
        loss_each = dpo_loss(lp[:batch_size], lp[batch_size:], ref_lp[idx], ref_lp[idx + n], beta)
        loss = loss_each.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if (log_every and step % log_every == 0) or step == steps:
            with torch.no_grad():
                margin = (lp[:batch_size] - ref_lp[idx]) - (lp[batch_size:] - ref_lp[idx + n])
            log.append(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "reward_margin": float(beta * margin.mean()),
                    "accuracy": float((margin > 0).float().mean()),
                }
            )
        if callback is not None and ((callback_every and step % callback_every == 0) or step == steps):
            call(step)
    policy.eval()
    return policy, pd.DataFrame(log)


# ------------------------------------------------------------------- measurements


def sample_texts(
    model: torch.nn.Module,
    vocab: lm.Vocab,
    domain: Domain,
    n_samples: int,
    *,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> list[list[str]]:
    """``n_samples`` outputs per prompt by ancestral sampling (one batched ``lm.sample`` call).

    Explained in :ref:`sec-preference-before-after`.
    """
    prefix = torch.cat(
        [torch.tensor(vocab.encode(f"{p} {SEP}", eos=False)).repeat(n_samples, 1) for p in domain.prompts]
    )
    max_new = int(domain.length.max()) + 1
    seq = lm.sample(model, prefix, max_new, generator=generator, temperature=temperature, eos_id=vocab.eos_id)
    texts = vocab.decode_batch(seq[:, prefix.shape[1] :])
    return [texts[i * n_samples : (i + 1) * n_samples] for i in range(domain.n_prompts)]


SAMPLE_METRICS = (
    "distinct-1",
    "distinct-2",
    "self-BLEU",
    "bigram entropy",
    "syntactic",
    "semantic",
    "effective semantic",
    "valid semantic classes",
    "pass rate",
    "malformed",
    "length",
)


def _pairs_differ(labels: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Share of the n(n-1) ordered sample pairs (i != j) with different labels (x both weights)."""
    n = len(labels)
    w = np.ones(n) if weight is None else weight.astype(float)
    same = labels[:, None] == labels[None, :]
    m = (w[:, None] * w[None, :]) * ~same
    return float(m.sum() / (n * (n - 1))) if n > 1 else 0.0


def sample_metrics(
    domain: Domain, prompt: int, texts: list[str], *, seed: int, self_bleu_samples: int | None = None
) -> dict[str, float]:
    """Diversity and quality of one prompt's samples (chapter 5 defines each).

    Lexical: distinct-1/2 (Li et al. 2016; unique n-grams / all n-grams), self-BLEU
    (Zhu et al. 2018; 0-100, higher = *less* diverse; over all samples unless
    ``self_bleu_samples`` subsamples the hypotheses), bigram entropy (nats, pooled).
    Syntactic: the share of sample pairs with different templates (program shapes, POS
    templates). Semantic: the share of pairs in different semantic classes (functions
    computed; content clusters), malformed outputs forming one class. Effective
    semantic: the share of pairs that are *both valid* and semantically different —
    invalid outputs add no diversity (after Shypula et al. 2025); ``valid semantic
    classes`` counts the distinct classes among valid samples. Quality: pass rate
    (share valid). ``malformed``: share outside the output space; ``length`` in tokens.
    Pair shares are unbiased estimates of the exact two-draw probabilities. ``seed`` draws
    the self-BLEU subsample (used only with ``self_bleu_samples``).
    Explained in :ref:`sec-preference-before-after`.
    """
    n = len(texts)
    if n < 2:
        raise ValueError(f"n_samples must be >= 2 to measure diversity; got {n}")
    idx = domain.lookup(texts)
    inside = idx >= 0
    valid = np.zeros(n, dtype=bool)
    valid[inside] = domain.valid[prompt, idx[inside]]
    sem = np.where(inside, domain.semantic[np.maximum(idx, 0)], -1)
    shp = np.where(inside, domain.shape[np.maximum(idx, 0)], -1)
    nonempty = [t if t.strip() else "<empty>" for t in texts]
    return {
        "distinct-1": metrics.distinct_n(nonempty, 1),
        "distinct-2": metrics.distinct_n(nonempty, 2),
        "self-BLEU": metrics.self_bleu(nonempty, max_samples=self_bleu_samples, seed=seed),
        "bigram entropy": metrics.ngram_entropy(nonempty, 2),
        "syntactic": _pairs_differ(shp),
        "semantic": _pairs_differ(sem),
        "effective semantic": _pairs_differ(sem, valid),
        "valid semantic classes": float(len(np.unique(sem[valid]))),
        "pass rate": float(valid.mean()),
        "malformed": float(1 - inside.mean()),
        "length": float(np.mean([len(t.split()) for t in texts])),
    }


def win_weights(p_ref: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """``w[p, y] = sum_y' p_ref(y') sigma(r(y) - r(y'))``: how often the judge prefers y to a reference sample.

    Explained in :ref:`sec-preference-before-after`.
    """
    out = np.empty(np.shape(rewards))
    for i, (q, r) in enumerate(zip(p_ref, rewards)):
        u, inv = np.unique(r, return_inverse=True)  # tied rewards share one row (the convergent judge: two)
        out[i] = (special.expit(u[:, None] - u[None, :]) @ np.bincount(inv, weights=q, minlength=len(u)))[inv]
    return out


def exact_metrics(
    domain: Domain,
    probs: np.ndarray,
    p_ref: np.ndarray,
    rewards: np.ndarray,
    leak: np.ndarray | None = None,
    *,
    win_w: np.ndarray | None = None,
    optimum: np.ndarray | None = None,
) -> pd.DataFrame:
    """Exact quantities of a distribution ``probs[prompt, output]`` over the enumerated space.

    ``entropy`` H(pi) in nats; ``bigram entropy (exact)`` the entropy of the pooled expected
    bigram distribution (the population value of the sample ``bigram entropy``); ``pass rate
    (exact)`` the valid mass times ``1 - leak``; ``syntactic (exact)`` / ``semantic (exact)``
    the chance that two independent samples differ in template / semantic class (malformed
    outputs, the leaked mass, being one class); ``effective semantic (exact)`` the chance that
    two independent samples are both valid and in different semantic classes, ``V^2 - sum_c
    V_c^2`` with ``V_c`` the valid mass of class c (both times ``1 - leak``, the mass inside the
    space); ``win rate`` the judge's expected preference for a sample of ``probs`` over one of
    ``p_ref``, ``E sigma(r(y) - r(y'))``; with ``optimum``, ``KL to optimum`` KL(probs ‖ optimum).
    One row per prompt.
    Explained in :ref:`sec-preference-before-after`.
    """
    leak = np.zeros(len(probs)) if leak is None else np.asarray(leak)
    table = gram_table(domain)
    q = table.expected_distribution(probs, n=2)
    vmass = probs * domain.valid
    n_cls = len(domain.semantic_names)
    per_class = vmass @ np.eye(n_cls)[domain.semantic]  # [prompts, classes], one product for all prompts
    win_w = win_weights(p_ref, rewards) if win_w is None else win_w
    win = (probs * win_w).sum(-1)
    extra = {} if optimum is None else {"KL to optimum": metrics.kl_divergence(probs, optimum)}

    def differ(labels: np.ndarray) -> np.ndarray:
        """P(two draws differ in label), the malformed mass (leak) forming one more class."""
        k = int(labels.max()) + 1
        mass = probs @ np.eye(k)[labels]
        return 1 - ((1 - leak)[:, None] ** 2 * mass**2).sum(-1) - leak**2

    return pd.DataFrame(
        {
            "prompt": np.arange(len(probs)),
            "entropy": metrics.entropy(probs),
            "bigram entropy (exact)": special.entr(q).sum(-1),  # 0 when no output has a bigram
            "pass rate (exact)": vmass.sum(-1) * (1 - leak),
            "syntactic (exact)": differ(domain.shape),
            "semantic (exact)": differ(domain.semantic),
            "effective semantic (exact)": (1 - leak) ** 2 * (vmass.sum(-1) ** 2 - (per_class**2).sum(-1)),
            "win rate": win,
            "leak": leak,
            **extra,
        }
    )


def optimum_curve(domain: Domain, p_ref: np.ndarray, rewards: np.ndarray, betas) -> pd.DataFrame:
    """Exact metrics of ``p*_beta ∝ p_ref exp(r / beta)`` for each beta (one row per beta x prompt).

    Explained in :ref:`sec-preference-theory`.
    """
    rows = []
    win_w = win_weights(p_ref, rewards)
    for b in betas:
        star = kl_regularised_optimum(p_ref, rewards, check_beta(b, "betas"))
        rows.append(exact_metrics(domain, star, p_ref, rewards, win_w=win_w).assign(beta=float(b)))
    return pd.concat(rows, ignore_index=True)


def optimum_limits(p_ref: np.ndarray, rewards: np.ndarray, *, rtol: float = 1e-9) -> pd.DataFrame:
    """Entropy of p* in the two limits, per prompt.

    beta -> inf: p* -> p_ref, so H -> H(p_ref). beta -> 0: p* -> p_ref restricted to the
    reward's argmax set A, so H -> H(p_ref | A) (= log|A| when p_ref is flat on A).
    The limit is *narrower* than the reference only when H(p_ref | A) < H(p_ref): a reward
    with many equal maximisers, on which p_ref is flatter than elsewhere, can widen it.
    Explained in :ref:`sec-preference-theory`.
    """
    top = rewards >= rewards.max(-1, keepdims=True) - rtol * np.abs(rewards).max(-1, keepdims=True)
    cond = np.where(top, p_ref, 0.0)
    return pd.DataFrame(
        {
            "prompt": np.arange(len(p_ref)),
            "entropy_beta_inf": metrics.entropy(p_ref),
            "entropy_beta_0": metrics.entropy(cond),
            "argmax_size": top.sum(-1),
        }
    )


# ------------------------------------------------------------------ the experiment

ARMS = (("code", "correct"), ("creative", "distinct"), ("code", "distinct"), ("creative", "correct"))


def natural_judge(domain: str) -> str:
    """What each domain pays for in the source notes: code -> "correct", creative -> "distinct".

    Explained in :ref:`sec-preference-setup`.
    """
    return {"code": "correct", "creative": "distinct"}[domain]


def check_arms(arms) -> list[tuple[str, str]]:
    """The (domain, judge) arms as a list of tuples, each checked (ValueError naming what is wrong).

    Explained in :ref:`sec-preference-setup`.
    """
    arms = [tuple(a) for a in arms]
    if not arms:
        raise ValueError("arms must name at least one (domain, judge) pair")
    for d, j in arms:
        if d not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}; got {d!r}")
        check_judge(j)
    return arms


def top_outputs(domain: Domain, probs: np.ndarray, *, prompt: int = 0, k: int = 5) -> pd.DataFrame:
    """The ``k`` most probable outputs of one prompt under ``probs``, with probability and validity.

    Explained in :ref:`sec-preference-before-after`.
    """
    order = np.argsort(-probs[prompt], kind="stable")[:k]
    return pd.DataFrame(
        {
            "prompt": domain.prompts[prompt],
            "rank": np.arange(1, len(order) + 1),
            "output": [domain.outputs[i] for i in order],
            "p": probs[prompt, order],
            "valid": domain.valid[prompt, order],
        }
    )


def changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, judge, beta, replicate, metric), each stage averaged over prompts, and
    ``delta = after - before``: one value per replicate, the unit the claims' intervals use.

    Explained in :ref:`sec-preference-before-after`.
    """
    keys = ["domain", "judge", "beta", "replicate", "metric"]
    wide = frame.groupby([*keys, "stage"])["value"].mean().unstack("stage").reset_index()
    wide["delta"] = wide["after"] - wide["before"]
    wide.columns.name = None
    return wide


def check_judge_scale(judge_scale: float) -> float:
    """A judge's strength: a finite number >= 0 (0 is a judge that prefers nothing).

    Explained in :ref:`sec-preference-setup`.
    """
    if isinstance(judge_scale, bool) or not (
        isinstance(judge_scale, (int, float, np.integer, np.floating)) and np.isfinite(judge_scale) and judge_scale >= 0
    ):
        raise ValueError(f"parameter 'judge_scale' must be a finite number >= 0; got {judge_scale!r}")
    return float(judge_scale)


def run_experiment(
    *,
    arms,
    beta: float,
    sweep_betas,
    sweep_arms,
    n_references: int,
    n_prompts: int,
    valid_share: float,
    corpus_size: int,
    pretrain_steps: int,
    n_pairs: int,
    dpo_steps: int,
    lr: float,
    n_samples: int,
    judge_scale: float,
    brevity: float,
    mix_lambdas,
    seed: int,
    arch: str,
    device: str,
    batch_size: int = 64,
    pretrain_lr: float = 1e-2,
    theory_betas=None,
    self_bleu_samples: int | None = None,
    model_sizes: dict | None = None,
    stack_models: bool = True,
) -> dict[str, pd.DataFrame]:
    """Pretrain ``n_references`` reference models and tune each with DPO once per arm.

    A *replicate* is one reference model: its own corpus draw, initial weights and
    minibatches (named streams of ``seed``), and then, for every (domain, judge) arm, its own
    preference pairs, DPO minibatches and samples. Replicates share nothing random, so one
    value per replicate is an independent draw of the whole pipeline. The judge's
    standardised reward is multiplied by ``judge_scale`` (0: a judge that prefers nothing,
    every label a coin flip, and p* = p_ref at every beta); ``brevity`` is the convergent
    judge's cost per token.

    Every arm is trained at ``beta`` and measured exactly and from ``n_samples`` samples per
    prompt; the ``sweep_arms`` are also trained at each of ``sweep_betas`` and measured
    exactly only (the theory figure). Returns tidy frames, each with a ``replicate`` column:

    * ``samples`` — ``domain, judge, beta, replicate, stage (before|after), prompt, metric,
      value`` (:func:`sample_metrics`; ``before`` is the replicate's reference model);
    * ``exact`` — the same keys with the exact metrics (:func:`exact_metrics`); stage
      ``optimum`` is p*_beta itself;
    * ``theory`` — ``domain, judge, beta, replicate, prompt`` + exact metrics of p*_beta on a
      grid of betas; ``limits`` — the entropy limits of p* (:func:`optimum_limits`);
    * ``mixed`` — for each domain and each λ of ``mix_lambdas``, DPO at ``beta`` on pairs
      labelled by the :func:`mixed_reward` ``(1 − λ) r_conv + λ r_dist``: ``domain, lam, beta,
      replicate, stage (before|after|optimum), prompt, metric, value`` (exact metrics);
    * ``p_ref`` — ``{(replicate, domain): p_ref}``, each reference model's exact distribution
      over the well-formed outputs (the theory of the mixed reward is computed from it);
    * ``training`` — the DPO logs; ``reference`` — one row per reference model;
    * ``top`` — the most probable outputs of the first prompt, before and after (replicate 0);
    * ``domains`` — the :class:`~vanishing_tails.core.domains.Domain`
      objects (not a frame).

    One-layer GRU models are trained as stacked models (``stack_models``; :mod:`.stacked`):
    all reference models in one, and all DPO runs — every reference model × arm × β and
    every mixed-reward run — in another, each model with its own data, minibatch stream,
    gradient clip and Adam moments; ``stack_models=False`` (and any other architecture)
    trains them one at a time, the same computation up to float rounding.

    Explained in :ref:`sec-preference-setup`.
    """
    arms = check_arms(arms)
    beta = check_beta(beta)
    sweep = [check_beta(b, "sweep_betas") for b in sweep_betas]
    sweep_arms = check_arms(sweep_arms) if sweep_arms else []
    judge_scale = check_judge_scale(judge_scale)
    brevity = check_brevity(brevity)
    mix_lambdas = check_lambdas(mix_lambdas)
    arm_betas = {a: sorted({beta} | (set(sweep) if a in sweep_arms else set())) for a in arms}
    if int(n_references) != n_references or n_references < 1:
        raise ValueError(f"n_references must be an integer >= 1; got {n_references!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to measure diversity; got {n_samples}")
    theory_betas = np.geomspace(0.02, 50, 41) if theory_betas is None else np.asarray(theory_betas)
    seeds = streams(seed)
    doms = {name: make_domain(name, n_prompts, valid_share) for name in DOMAINS}
    used = [d for d in DOMAINS if any(a[0] == d for a in arms)]  # fixed order: determinism
    samples, exact, theory, limits, training, top, refs, mixed = [], [], [], [], [], [], [], []
    p_refs = {}

    def measure(model, vocab, dom, key):
        """Sample metrics of ``model`` from the named stream ``key`` alone."""
        g = torch.Generator().manual_seed(seeds[key])
        texts = sample_texts(model, vocab, dom, n_samples, generator=g)
        return pd.DataFrame(
            [
                {
                    "prompt": p,
                    **sample_metrics(dom, p, texts[p], seed=seeds[(*key, "bleu")], self_bleu_samples=self_bleu_samples),
                }
                for p in range(dom.n_prompts)
            ]
        )

    sizes = dict(model_sizes or {})
    stacked = stack_models and arch == "gru" and sizes.get("n_layers", 1) == 1 and not sizes.get("dropout", 0.0)
    t_start = time.process_time()
    # 1. the reference models: a GRU's are pretrained together as one stacked model
    starts = [
        reference_start(list(doms.values()), corpus_size=corpus_size, seed=seeds["reference", rep], arch=arch,
                        device=device, **sizes)
        for rep in range(n_references)
    ]  # fmt: skip
    vocab = starts[0][1]
    if stacked:
        ref_stack, pre_loss = pretrain_stacked(
            [s[0] for s in starts], [s[2] for s in starts], steps=pretrain_steps, batch_size=128, lr=pretrain_lr,
            seeds=[s[3] for s in starts],
        )  # fmt: skip
        ref_models = [ref_stack.model(c) for c in range(n_references)]
    else:
        ref_models, pre_loss = [], []
        for model, _, tokens, batch_seed in starts:
            log = lm.train_lm(model, tokens, steps=pretrain_steps, batch_size=128, lr=pretrain_lr, seed=batch_seed)
            ref_models.append(model)
            pre_loss.append(float(log["loss"].iloc[-1]))
    del starts
    # every (prompt, output) sequence of each used domain, and its log-probability under each reference
    tables = {d: space_tokens(vocab, doms[d]) for d in used}
    width = max(len(vocab), 3 * ref_stack.d_hidden) if stacked else 0  # the widest activation per position
    ref_logp = {}
    for d in used:
        dom = doms[d]
        if stacked:
            tok, mask = tables[d]
            lp = stacked_logprobs(ref_stack, tok, mask, chunk=chunk_rows(n_references, tok.shape[1], width))
            ref_logp[d] = lp.numpy().reshape(n_references, dom.n_prompts, dom.n_outputs)
        else:
            ref_logp[d] = np.stack([output_logprobs(m, vocab, dom) for m in ref_models])

    # 2. per reference model: rewards, theory, samples of the reference, preference pairs (the DPO jobs)
    jobs = []
    dists = {}
    for rep in range(n_references):
        ref = ref_models[rep]
        ref_dist = {d: restrict(ref_logp[d][rep]) for d in used}
        dists[rep] = ref_dist
        rewards = {(d, j): judge_scale * judge_rewards(doms[d], j, ref_dist[d][0], brevity=brevity) for d, j in arms}
        before = {d: measure(ref, vocab, doms[d], ("sample", rep, d)) for d in used}
        if rep == 0:
            for d in used:
                first = top_outputs(doms[d], ref_dist[d][0])
                top.append(first.assign(domain=d, judge="-", beta=np.nan, stage="before"))
        for d, j in arms:
            dom = doms[d]
            p_ref = ref_dist[d][0]
            r = rewards[(d, j)]
            keys = dict(domain=d, judge=j, replicate=rep)
            theory.append(optimum_curve(dom, p_ref, r, theory_betas).assign(**keys))
            limits.append(optimum_limits(p_ref, r).assign(**keys))
            win_w = win_weights(p_ref, r)
            pairs = preference_pairs(p_ref, r, n_pairs, rng=seeds.rng(("pairs", rep, d, j)))
            for b in arm_betas[(d, j)]:
                jobs.append(dict(kind="arm", rep=rep, d=d, j=j, b=b, r=r, win_w=win_w, pairs=pairs,
                                 seed=seeds["dpo", rep, d, j, b], keys=keys, before=before[d]))  # fmt: skip
        for d in used if mix_lambdas else []:
            p_ref = ref_dist[d][0]
            r_conv, r_dist = (judge_scale * judge_rewards(doms[d], j, p_ref, brevity=brevity) for j in JUDGES)
            for lam in mix_lambdas:
                r = mixed_reward(r_conv, r_dist, lam)
                pairs = preference_pairs(p_ref, r, n_pairs, rng=seeds.rng(("mix-pairs", rep, d, lam)))
                jobs.append(dict(kind="mix", rep=rep, d=d, lam=lam, b=beta, r=r, win_w=win_weights(p_ref, r),
                                 pairs=pairs, seed=seeds["mix-dpo", rep, d, lam]))  # fmt: skip

    # 3. DPO: a GRU's jobs, every reference model and arm, run as one stacked model
    log_every = max(1, dpo_steps // 10)
    if stacked:
        order = list(tables)
        offset = dict(zip(order, np.cumsum([0] + [len(tables[d][0]) for d in order[:-1]])))
        T = max(tables[d][0].shape[1] for d in order)
        table = torch.cat([F.pad(tables[d][0], (0, T - tables[d][0].shape[1])) for d in order])
        table_mask = torch.cat([F.pad(tables[d][1], (0, T - tables[d][1].shape[1])) for d in order])
        ref_rows = torch.from_numpy(np.concatenate([ref_logp[d].reshape(n_references, -1) for d in order], axis=1))

        def rows(job, column):
            return (
                offset[job["d"]]
                + job["pairs"]["prompt"].to_numpy() * doms[job["d"]].n_outputs
                + job["pairs"][column].to_numpy()
            )

        policy = ref_stack.select([job["rep"] for job in jobs])
        logs = dpo_stacked(
            policy, table, table_mask, ref_rows[[job["rep"] for job in jobs]],
            [rows(job, "chosen") for job in jobs], [rows(job, "rejected") for job in jobs],
            betas=[job["b"] for job in jobs], steps=dpo_steps, lr=lr, seeds=[job["seed"] for job in jobs],
            batch_size=batch_size, log_every=log_every,
        )  # fmt: skip
        for d in used:
            chains = [c for c, job in enumerate(jobs) if job["d"] == d]
            if not chains:
                continue
            tok, mask = tables[d]
            lp = stacked_logprobs(policy.select(chains), tok, mask, chunk=chunk_rows(len(chains), tok.shape[1], width))
            for c, row in zip(chains, lp.numpy()):
                jobs[c]["dist"] = restrict(row.reshape(doms[d].n_prompts, doms[d].n_outputs))
        for c, job in enumerate(jobs):
            job["log"] = logs[c]
            if job["kind"] == "arm" and job["b"] == beta:
                job["policy"] = policy.model(c)
    else:
        for job in jobs:
            pol, job["log"] = train_dpo(
                ref_models[job["rep"]], vocab, doms[job["d"]], job["pairs"], beta=job["b"], steps=dpo_steps, lr=lr,
                seed=job["seed"], batch_size=batch_size, log_every=log_every,
            )  # fmt: skip
            job["dist"] = restrict(output_logprobs(pol, vocab, doms[job["d"]]))
            job["policy"] = pol

    # 4. measurements, in the order of the jobs
    for job in jobs:
        rep, d, b, r = job["rep"], job["d"], job["b"], job["r"]
        dom = doms[d]
        p_ref, leak_ref = dists[rep][d]
        probs, leak = job["dist"]
        star = kl_regularised_optimum(p_ref, r, b)
        kw = dict(win_w=job["win_w"], optimum=star if job["kind"] == "arm" else None)
        if job["kind"] == "mix":
            at = dict(domain=d, lam=job["lam"], beta=b, replicate=rep)
            for stage, (q_, lk) in {
                "before": (p_ref, leak_ref),
                "after": (probs, leak),
                "optimum": (star, None),
            }.items():
                mixed.append(exact_metrics(dom, q_, p_ref, r, lk, **kw).assign(stage=stage, **at))
            continue
        at = dict(beta=b, **job["keys"])
        exact.append(exact_metrics(dom, p_ref, p_ref, r, leak_ref, **kw).assign(stage="before", **at))
        exact.append(exact_metrics(dom, star, p_ref, r, **kw).assign(stage="optimum", **at))
        training.append(job["log"].assign(**at))
        exact.append(exact_metrics(dom, probs, p_ref, r, leak, **kw).assign(stage="after", **at))
        if b == beta:
            samples.append(job["before"].assign(stage="before", **at))
            samples.append(measure(job["policy"], vocab, dom, ("sample", rep, d, job["j"])).assign(stage="after", **at))
            if rep == 0:
                top.append(top_outputs(dom, probs).assign(domain=d, judge=job["j"], beta=b, stage="after"))
    cpu = (time.process_time() - t_start) / n_references
    for rep in range(n_references):
        ref_dist = dists[rep]
        p_refs.update({(rep, d): ref_dist[d][0] for d in used})
        refs.append(
            {
                "replicate": rep,
                "n_parameters": lm.n_parameters(ref_models[rep]),
                "vocab_size": len(vocab),
                "pretrain_loss": float(pre_loss[rep]),
                **{f"leak_{d}": float(ref_dist[d][1].mean()) for d in ref_dist},
                **{
                    f"kl_to_prior_{d}": float(metrics.kl_divergence(doms[d].prior, ref_dist[d][0]).mean())
                    for d in ref_dist
                },
                "cpu_seconds": cpu,
            }
        )
    id_vars = ["domain", "judge", "beta", "replicate", "stage", "prompt"]
    return {
        "samples": pd.concat(samples, ignore_index=True).melt(id_vars=id_vars, var_name="metric"),
        "exact": pd.concat(exact, ignore_index=True).melt(id_vars=id_vars, var_name="metric"),
        "theory": pd.concat(theory, ignore_index=True),
        "limits": pd.concat(limits, ignore_index=True),
        "training": pd.concat(training, ignore_index=True),
        "reference": pd.DataFrame(refs),
        "top": pd.concat(top, ignore_index=True),
        "mixed": (
            pd.concat(mixed, ignore_index=True).melt(
                id_vars=["domain", "lam", "beta", "replicate", "stage", "prompt"], var_name="metric"
            )
            if mixed
            else pd.DataFrame(columns=["domain", "lam", "beta", "replicate", "stage", "prompt", "metric", "value"])
        ),
        "p_ref": p_refs,
        "domains": doms,
    }


# ------------------------------------------------------------ the common tail measures

JUDGE_WORDS = {"correct": "convergent", "distinct": "distinctive"}


def trajectory_arm(domain: str, judge: str, beta: float) -> str:
    """The arm name of :func:`trajectory`: ``"<domain>: <convergent|distinctive> judge, β=<beta>"``.

    Explained in :ref:`sec-preference-tails`.
    """
    return f"{domain}: {JUDGE_WORDS[check_judge(judge)]} judge, β={beta:g}"


def tail_measures(
    probs: np.ndarray,
    leak: np.ndarray,
    p_ref: np.ndarray,
    leak_ref: np.ndarray,
    rewards: np.ndarray,
    *,
    q: float,
    n_support: int,
) -> pd.DataFrame:
    """The common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`) of a model's exact
    distributions, one row per leading index of ``probs`` ``[S, prompts, outputs]``, mean over prompts.

    The outcome space is the domain's enumerated outputs plus one *malformed* outcome (the
    leaked mass ``leak`` ``[S, prompts]``). The "real" distribution is the reference model
    restricted to well-formed outputs, ``p_ref`` (its malformed mass is 0, so ``error_mass`` is
    the mass on malformed outputs); the start is the reference model itself, malformed mass
    ``leak_ref`` included (so ``kl_from_start`` is 0 for the reference). ``q_tail_mass`` is the
    mass on the reference's least probable ``q`` (relative to its own), ``support`` the
    expected distinct outputs in ``n_support`` draws relative to the reference's, and
    ``quality`` the judge's mean standardised reward ``E_pi[r | well-formed]`` (0 for the
    reference by construction).
    Explained in :ref:`sec-preference-tails`.
    """
    probs = np.asarray(probs, dtype=float)
    leak = np.asarray(leak, dtype=float)
    rows = []
    for p in range(probs.shape[1]):
        full = np.concatenate([probs[:, p] * (1 - leak[:, p, None]), leak[:, p, None]], axis=-1)
        reference = np.append(p_ref[p], 0.0)
        start = np.append(p_ref[p] * (1 - leak_ref[p]), leak_ref[p])
        quality = (probs[:, p] * rewards[p]).sum(-1)
        rows.append(tails.categorical_measures(full, reference, start, q=q, n=n_support, quality=quality).to_numpy())
    return pd.DataFrame(np.mean(rows, axis=0), columns=list(tails.COLUMNS))


def trajectory(
    *,
    n_seeds: int,
    n_prompts: int,
    valid_share: float,
    corpus_size: int,
    pretrain_steps: int,
    n_pairs: int,
    dpo_steps: int,
    dpo_lr: float,
    betas,
    brevity: float,
    judge_scale: float,
    eval_every: int,
    q: float,
    n_support: int,
    arch: str,
    device: str,
    seed: int,
) -> pd.DataFrame:
    """The common tail measures along DPO training, for every arm, reference model and recorded step.

    One row per (arm, replicate, step) with the columns ``experiment, arm, replicate, step,
    mechanism`` and :data:`vanishing_tails.core.tails.COLUMNS` (:func:`tail_measures`: the
    "real" distribution is the reference model restricted to well-formed outputs,
    ``error_mass`` the mass on malformed outputs, ``quality`` the arm's judge reward in
    reference standard deviations; means over prompts). A *replicate* is one independently
    pretrained reference model (index ``0..n_seeds-1``); ``step`` is the DPO step (0 = the
    reference itself, then every ``eval_every`` steps and the last). Arms
    (:func:`trajectory_arm`): both domains x both judges (convergent: validity minus
    ``brevity`` per token; distinctive: rare n-grams) x each KL strength in ``betas``, all
    mechanism ``"tilt"`` (DPO moves toward the KL-regularised optimum p* ∝ p_ref e^{r/β}).
    Null: ``dpo_lr = 0`` leaves every measure at its step-0 value. Everything random comes
    from named streams of ``seed``.
    Explained in :ref:`sec-preference-tails`.
    """
    betas = [check_beta(b, "betas") for b in betas]
    if not betas:
        raise ValueError("parameter 'betas' must list at least one KL strength")
    if int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"parameter 'n_seeds' must be an integer >= 1; got {n_seeds!r}")
    if int(eval_every) != eval_every or eval_every < 1:
        raise ValueError(f"parameter 'eval_every' must be an integer >= 1; got {eval_every!r}")
    if not (np.isfinite(dpo_lr) and dpo_lr >= 0):
        raise ValueError(f"parameter 'dpo_lr' must be a finite number >= 0; got {dpo_lr!r}")
    judge_scale = check_judge_scale(judge_scale)
    check_brevity(brevity)
    seeds = streams(seed)
    doms = {name: make_domain(name, n_prompts, valid_share) for name in DOMAINS}
    frames = []
    for rep in range(n_seeds):
        ref, vocab, _ = pretrain_reference(
            list(doms.values()),
            corpus_size=corpus_size,
            steps=pretrain_steps,
            seed=seeds["trajectory", "reference", rep],
            arch=arch,
            device=device,
        )
        for d, dom in doms.items():
            p_ref, leak_ref = restrict(output_logprobs(ref, vocab, dom))
            for j in JUDGES:
                r = judge_scale * judge_rewards(dom, j, p_ref, brevity=brevity)
                pairs = preference_pairs(p_ref, r, n_pairs, rng=seeds.rng(("trajectory", "pairs", rep, d, j)))
                for b in betas:
                    steps, dists = [], []

                    def record(step, policy, dom=dom, vocab=vocab, steps=steps, dists=dists):
                        steps.append(step)
                        dists.append(restrict(output_logprobs(policy, vocab, dom)))

                    train_dpo(
                        ref,
                        vocab,
                        dom,
                        pairs,
                        beta=b,
                        steps=dpo_steps,
                        lr=dpo_lr,
                        seed=seeds["trajectory", "dpo", rep, d, j, b],
                        callback=record,
                        callback_every=eval_every,
                    )
                    probs = np.stack([x[0] for x in dists])
                    leak = np.stack([x[1] for x in dists])
                    m = tail_measures(probs, leak, p_ref, leak_ref, r, q=q, n_support=n_support)
                    frames.append(
                        m.assign(
                            experiment="preference",
                            arm=trajectory_arm(d, j, b),
                            replicate=rep,
                            step=steps,
                            mechanism="tilt",
                        )
                    )
    frame = pd.concat(frames, ignore_index=True)
    frame["kl_from_start"] = frame["kl_from_start"].clip(lower=0.0)  # rounding below 0 at step 0
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]]


# ------------------------------------------------------------------ the mixed reward


def check_lambdas(lambdas, name: str = "mix_lambdas") -> list[float]:
    """Mixing weights λ of :func:`mixed_reward`: each a finite number in [0, 1].

    Explained in :ref:`sec-preference-mixed`.
    """
    out = []
    for lam in lambdas:
        if isinstance(lam, bool) or not (isinstance(lam, (int, float, np.integer, np.floating)) and 0 <= lam <= 1):
            raise ValueError(f"parameter {name!r} must hold numbers in [0, 1]; got {lam!r}")
        out.append(float(lam))
    return out


def mixed_reward(r_conv: np.ndarray, r_dist: np.ndarray, lam) -> np.ndarray:
    """``r_λ = (1 − λ) r_conv + λ r_dist``; ``lam`` a number or an array (broadcast over new leading axes).

    Both rewards are standardised under the reference, so λ = 0 is the convergent judge,
    λ = 1 the distinctiveness judge.
    Explained in :ref:`sec-preference-mixed`.
    """
    lam = np.asarray(lam, dtype=float)[(...,) + (None,) * np.ndim(r_conv)]
    return (1 - lam) * r_conv + lam * r_dist


def bigram_entropy(domain: Domain, probs: np.ndarray) -> np.ndarray:
    """Exact entropy (nats) of the pooled expected bigram distribution of ``probs`` ``[..., outputs]``.

    The population value of the sample bigram entropy (``exact_metrics``' ``bigram entropy (exact)``).
    Explained in :ref:`sec-preference-mixed`.
    """
    return special.entr(gram_table(domain).expected_distribution(probs, n=2)).sum(-1)


def bigram_change(domain: Domain, p_ref: np.ndarray, reward: np.ndarray, betas) -> np.ndarray:
    """``H₂(p*_β) − H₂(p_ref)``, mean over prompts, with ``p*_β ∝ p_ref e^{r/β}`` exact.

    ``reward`` is ``[..., prompts, outputs]`` (e.g. a stack over λ); ``betas`` a sequence.
    Returns ``[len(betas), ...]``.
    Explained in :ref:`sec-preference-mixed`.
    """
    h0 = bigram_entropy(domain, p_ref).mean(-1)
    return np.stack(
        [bigram_entropy(domain, kl_regularised_optimum(p_ref, reward, check_beta(b, "betas"))).mean(-1) - h0
         for b in betas]
    )  # fmt: skip


def bigram_entropy_slope(domain: Domain, p_ref: np.ndarray, reward: np.ndarray) -> float:
    """``d/dε H₂(p_ref e^{εr}/Z)`` at ε = 0 (= 1/β → 0), in closed form, mean over prompts.

    With ``m = p C`` the expected bigram counts (``C`` the output-by-bigram count table),
    ``q = m / Σm`` and ``dp = p_ref (r − E_ref r)``: ``dH₂ = −Σ_g log q_g (dm_g − q_g dM) / M``.
    The first-order change is linear in ``r``, so for the mixed reward it is
    ``(1 − λ) a + λ b`` with ``a``, ``b`` the two judges' slopes, and as β → ∞ the critical
    weight tends to ``λ*_∞ = a / (a − b)`` (:func:`critical_lambda`).
    Explained in :ref:`sec-preference-mixed`.
    """
    table = gram_table(domain)
    counts = table.counts[:, table.order == 2]
    dp = p_ref * (reward - (p_ref * reward).sum(-1, keepdims=True))
    m, dm = p_ref @ counts, dp @ counts
    M, dM = m.sum(-1, keepdims=True), dm.sum(-1, keepdims=True)
    q = m / M
    logq = np.log(np.where(q > 0, q, 1.0))
    return float((-(logq * (dm - q * dM)).sum(-1) / M[:, 0]).mean())


def critical_lambdas(
    domain: Domain, p_ref: np.ndarray, r_conv: np.ndarray, r_dist: np.ndarray, beta: float, *, grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every λ in [0, 1] at which ``Δ(λ) = H₂(p*_{β,λ}) − H₂(p_ref)`` changes sign, and the direction.

    ``p*_{β,λ} ∝ p_ref e^{r_λ/β}`` with ``r_λ`` the :func:`mixed_reward`; Δ is the prompt mean
    (:func:`bigram_change`), computed exactly. Sign changes are bracketed on a grid of
    ``grid`` values of λ and each root refined by Brent's method to 1e-12. Returns
    ``(roots, up)``, ``up`` True where Δ turns from ≤ 0 to > 0 as λ grows.
    Explained in :ref:`sec-preference-mixed`.
    """
    from scipy.optimize import brentq

    if int(grid) != grid or grid < 2:
        raise ValueError(f"grid must be an integer >= 2; got {grid!r}")
    lams = np.linspace(0, 1, int(grid))
    delta = bigram_change(domain, p_ref, mixed_reward(r_conv, r_dist, lams), [beta])[0]

    def f(lam: float) -> float:
        return float(bigram_change(domain, p_ref, mixed_reward(r_conv, r_dist, lam), [beta])[0])

    pos = delta > 0
    roots, up = [], []
    for k in np.flatnonzero(pos[:-1] != pos[1:]):
        lo, hi = lams[k], lams[k + 1]
        roots.append(lo if delta[k] == 0 else float(brentq(f, lo, hi, xtol=1e-12, rtol=1e-12)))
        up.append(bool(pos[k + 1]))
    return np.array(roots, dtype=float), np.array(up, dtype=bool)


def critical_lambda(
    domain: Domain, p_ref: np.ndarray, r_conv: np.ndarray, r_dist: np.ndarray, beta: float, *, grid: int
) -> float:
    """λ*(β): the smallest λ at which the exact bigram-entropy change of p*_{β,λ} turns from ≤ 0 to > 0.

    The first upward root of :func:`critical_lambdas`; NaN when there is none (for small β
    even the distinctiveness judge's optimum narrows, and no mixture widens). As β → ∞,
    λ* → ``a / (a − b)`` with ``a``, ``b`` the judges' :func:`bigram_entropy_slope`.
    Explained in :ref:`sec-preference-mixed`.
    """
    roots, up = critical_lambdas(domain, p_ref, r_conv, r_dist, beta, grid=grid)
    return float(roots[up][0]) if up.any() else float("nan")


def phase_diagram(
    domain: Domain, p_ref: np.ndarray, r_conv: np.ndarray, r_dist: np.ndarray, betas, lambdas
) -> pd.DataFrame:
    """Exact ``Δ H₂ = H₂(p*_{β,λ}) − H₂(p_ref)`` (prompt mean) on a (β, λ) grid: columns ``beta, lam, delta``.

    Explained in :ref:`sec-preference-mixed`.
    """
    lambdas = check_lambdas(lambdas, "lambdas")
    delta = bigram_change(domain, p_ref, mixed_reward(r_conv, r_dist, lambdas), betas)  # [B, L]
    b, lam = np.meshgrid(np.asarray(betas, dtype=float), lambdas, indexing="ij")
    return pd.DataFrame({"beta": b.ravel(), "lam": lam.ravel(), "delta": delta.ravel()})
