"""Preference tuning (DPO) against two judges, and what it does to diversity (chapter 5).

Chapter 5, "What the reward pays for", tunes one small reference language model with
Direct Preference Optimisation (Rafailov et al. 2023, ``rafailov2023dpo``) in two toy
domains (``vanishing_tails.core.domains``: tiny programs and one-line poems) against two
judges, and measures lexical, syntactic, semantic and *effective* semantic diversity
(Shypula et al. 2025, ``shypula2025diversity``) before and after.

The pieces, bottom to top:

* **Judges** (:func:`judge_scores`, :func:`judge_rewards`). ``"correct"`` — the convergent
  judge: score ``s(y) = 1[y valid] - brevity * len(y)`` (prefers a program that returns
  the asked value, or a line on topic; near-ties go to the shorter one). ``"distinct"`` —
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

from vanishing_tails.core import lm, metrics
from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.domains import DOMAINS, Domain, make_domain
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.core.seeds import streams

from .spec import JUDGES

SEP = ":"
BREVITY = 0.05  # per token: small, so that length only breaks near-ties of validity


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


def judge_scores(domain: Domain, judge: str, p_ref: np.ndarray, *, brevity: float = BREVITY) -> np.ndarray:
    """Raw judge scores ``s[prompt, output]`` (see the module docstring).

    ``p_ref`` ``[prompts, outputs]`` is the reference model's distribution; the
    distinctiveness judge measures rarity against it (Li et al. 2025 reward semantic
    distinctiveness within a group instead; here it is against the reference so that the
    reward is fixed and the optimum exact).
    Explained in :ref:`sec-preference-setup`.
    """
    check_judge(judge)
    if judge == "correct":
        return domain.valid.astype(float) - brevity * domain.length[None, :]
    table = gram_table(domain)
    q = table.expected_distribution(p_ref)  # [P, G]
    surprisal = -np.log(np.maximum(q, 1e-12))  # [P, G]
    return (surprisal @ table.counts.T) / table.counts.sum(axis=1)[None, :]


def judge_rewards(domain: Domain, judge: str, p_ref: np.ndarray, **kw) -> np.ndarray:
    """Scores standardised under ``p_ref`` for each prompt: ``(s - E_ref s) / sd_ref s``.

    A constant score (standard deviation 0) gives a reward of 0 everywhere.
    Explained in :ref:`sec-preference-setup`.
    """
    s = judge_scores(domain, judge, p_ref, **kw)
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
    log = lm.train_lm(model, tokens, steps=steps, batch_size=batch_size, lr=pretrain_lr, seed=seeds["batches"])
    return model, vocab, log


@torch.no_grad()
def output_logprobs(model: torch.nn.Module, vocab: lm.Vocab, domain: Domain, *, chunk: int = 4096) -> np.ndarray:
    """Exact ``log pi(y | prompt)`` for every prompt and every output of the domain: ``[P, N]``.

    The sum over the space is at most 1: the rest (the *leak*) is the model's mass on
    malformed outputs.
    Explained in :ref:`sec-preference-setup`.
    """
    prompts = [p for p in domain.prompts for _ in domain.outputs]
    outputs = [o for _ in domain.prompts for o in domain.outputs]
    tokens, mask = encode_pairs(vocab, prompts, outputs)
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
) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Tune a copy of ``reference`` with DPO on ``pairs``; the reference stays frozen.

    Minibatches of pairs are drawn with replacement by a ``torch.Generator`` seeded with
    ``seed``. Returns the policy and a log frame (``step, loss, reward_margin,
    accuracy``: the mean implicit-reward margin and how often it orders the pair as the
    judge did).
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
    return np.stack([(1 / (1 + np.exp(-(r[:, None] - r[None, :])))) @ q for q, r in zip(p_ref, rewards)])


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
    seed: int,
    arch: str,
    device: str,
    batch_size: int = 64,
    pretrain_lr: float = 1e-2,
    theory_betas=None,
    self_bleu_samples: int | None = None,
    model_sizes: dict | None = None,
) -> dict[str, pd.DataFrame]:
    """Pretrain ``n_references`` reference models and tune each with DPO once per arm.

    A *replicate* is one reference model: its own corpus draw, initial weights and
    minibatches (named streams of ``seed``), and then, for every (domain, judge) arm, its own
    preference pairs, DPO minibatches and samples. Replicates share nothing random, so one
    value per replicate is an independent draw of the whole pipeline. The judge's
    standardised reward is multiplied by ``judge_scale`` (0: a judge that prefers nothing,
    every label a coin flip, and p* = p_ref at every beta).

    Every arm is trained at ``beta`` and measured exactly and from ``n_samples`` samples per
    prompt; the ``sweep_arms`` are also trained at each of ``sweep_betas`` and measured
    exactly only (the theory figure). Returns tidy frames, each with a ``replicate`` column:

    * ``samples`` — ``domain, judge, beta, replicate, stage (before|after), prompt, metric,
      value`` (:func:`sample_metrics`; ``before`` is the replicate's reference model);
    * ``exact`` — the same keys with the exact metrics (:func:`exact_metrics`); stage
      ``optimum`` is p*_beta itself;
    * ``theory`` — ``domain, judge, beta, replicate, prompt`` + exact metrics of p*_beta on a
      grid of betas; ``limits`` — the entropy limits of p* (:func:`optimum_limits`);
    * ``training`` — the DPO logs; ``reference`` — one row per reference model;
    * ``top`` — the most probable outputs of the first prompt, before and after (replicate 0);
    * ``domains`` — the :class:`~vanishing_tails.core.domains.Domain`
      objects (not a frame).

    Explained in :ref:`sec-preference-setup`.
    """
    arms = check_arms(arms)
    beta = check_beta(beta)
    sweep = [check_beta(b, "sweep_betas") for b in sweep_betas]
    sweep_arms = check_arms(sweep_arms) if sweep_arms else []
    judge_scale = check_judge_scale(judge_scale)
    arm_betas = {a: sorted({beta} | (set(sweep) if a in sweep_arms else set())) for a in arms}
    if int(n_references) != n_references or n_references < 1:
        raise ValueError(f"n_references must be an integer >= 1; got {n_references!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to measure diversity; got {n_samples}")
    theory_betas = np.geomspace(0.02, 50, 41) if theory_betas is None else np.asarray(theory_betas)
    seeds = streams(seed)
    doms = {name: make_domain(name, n_prompts, valid_share) for name in DOMAINS}
    used = [d for d in DOMAINS if any(a[0] == d for a in arms)]  # fixed order: determinism
    samples, exact, theory, limits, training, top, refs = [], [], [], [], [], [], []

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

    for rep in range(n_references):
        t0 = time.process_time()
        ref, vocab, pre_log = pretrain_reference(
            list(doms.values()),
            corpus_size=corpus_size,
            steps=pretrain_steps,
            seed=seeds["reference", rep],
            arch=arch,
            device=device,
            pretrain_lr=pretrain_lr,
            **dict(model_sizes or {}),
        )
        ref_dist = {d: restrict(output_logprobs(ref, vocab, doms[d])) for d in used}
        rewards = {(d, j): judge_scale * judge_rewards(doms[d], j, ref_dist[d][0]) for d, j in arms}

        before = {d: measure(ref, vocab, doms[d], ("sample", rep, d)) for d in used}
        if rep == 0:
            for d in used:
                first = top_outputs(doms[d], ref_dist[d][0])
                top.append(first.assign(domain=d, judge="-", beta=np.nan, stage="before"))
        for d, j in arms:
            dom = doms[d]
            p_ref, leak_ref = ref_dist[d]
            r = rewards[(d, j)]
            keys = dict(domain=d, judge=j, replicate=rep)
            theory.append(optimum_curve(dom, p_ref, r, theory_betas).assign(**keys))
            limits.append(optimum_limits(p_ref, r).assign(**keys))
            win_w = win_weights(p_ref, r)
            pairs = preference_pairs(p_ref, r, n_pairs, rng=seeds.rng(("pairs", rep, d, j)))
            for b in arm_betas[(d, j)]:
                star = kl_regularised_optimum(p_ref, r, b)
                kw = dict(win_w=win_w, optimum=star)
                at = dict(beta=b, **keys)
                exact.append(exact_metrics(dom, p_ref, p_ref, r, leak_ref, **kw).assign(stage="before", **at))
                exact.append(exact_metrics(dom, star, p_ref, r, **kw).assign(stage="optimum", **at))
                policy, log = train_dpo(
                    ref,
                    vocab,
                    dom,
                    pairs,
                    beta=b,
                    steps=dpo_steps,
                    lr=lr,
                    seed=seeds["dpo", rep, d, j, b],
                    batch_size=batch_size,
                    log_every=max(1, dpo_steps // 10),
                )
                training.append(log.assign(**at))
                probs, leak = restrict(output_logprobs(policy, vocab, dom))
                exact.append(exact_metrics(dom, probs, p_ref, r, leak, **kw).assign(stage="after", **at))
                if b == beta:
                    samples.append(before[d].assign(stage="before", **at))
                    samples.append(measure(policy, vocab, dom, ("sample", rep, d, j)).assign(stage="after", **at))
                    if rep == 0:
                        top.append(top_outputs(dom, probs).assign(domain=d, judge=j, beta=b, stage="after"))
        refs.append(
            {
                "replicate": rep,
                "n_parameters": lm.n_parameters(ref),
                "vocab_size": len(vocab),
                "pretrain_loss": float(pre_log["loss"].iloc[-1]),
                **{f"leak_{d}": float(ref_dist[d][1].mean()) for d in ref_dist},
                **{
                    f"kl_to_prior_{d}": float(metrics.kl_divergence(doms[d].prior, ref_dist[d][0]).mean())
                    for d in ref_dist
                },
                "cpu_seconds": time.process_time() - t0,
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
        "domains": doms,
    }
