"""Pretraining on a format mixture, then RL with a correctness reward (chapter 4, "One format wins").

Two pieces, after Zhao et al. 2025 (``zhao2025echo``, "Echo Chamber"):

* :func:`pretrain` trains a :class:`~vanishing_tails.core.lm.TinyTransformer` from scratch on
  :func:`vanishing_tails.experiments.formats.task.pretraining_corpus` and caches the weights under
  ``<build>/cache/checkpoints/<hash>.pt``, the hash taken over everything that determines
  them (task, mixture, model size, optimiser settings, seed, device type, torch version and
  the source of ``formats.py`` and ``lm.py``), so a second run of the chapter does not
  retrain. Writes are atomic (temporary file + ``os.replace``), so concurrent test workers
  never read half a file.
* :func:`rl_run` fine-tunes it with a GRPO-style loop: per step, ``batch_problems``
  held-out problems, ``group_size`` samples each, reward 1 for a correct final answer,
  and a KL penalty to the pretrained model folded into the reward,

  .. math:: \\tilde r(x, y) = r(x, y) - \\beta\\,[\\log\\pi_\\theta(y\\mid x) - \\log\\pi_{\\mathrm{ref}}(y\\mid x)],

  with group-relative advantages :math:`A_i = \\tilde r_i - \\operatorname{mean}_g \\tilde r`
  (:func:`vanishing_tails.core.rl.group_advantages`, ``normalize=False``) and the
  policy-gradient loss :math:`-\\sum_i A_i \\log\\pi_\\theta(y_i\\mid x)`. Its fixed point
  is the KL-regularised optimum :math:`\\pi^*(y\\mid x)\\propto\\pi_{\\mathrm{ref}}(y\\mid x)
  e^{r(x,y)/\\beta}` (``korbak2022kl``; :func:`vanishing_tails.core.rl.kl_regularised_optimum`),
  whose format shares :func:`format_optimum` computes.

Per step it records the share of each format (the library's classifier), pass@1, pass@k,
maj@k and the KL to the pretrained model, as a tidy frame.

Sampling is :func:`vanishing_tails.core.lm.sample` (the transformer decodes with a key/value
cache). Also here: :func:`evaluate` (pass@k / maj@k before and after RL),
:func:`format_optimum` and :func:`bandit_pg` (the analytic companion and its oracle) and
:func:`experiment` (the chapter's whole grid of sizes, KL strengths and seeds).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from vanishing_tails.core import lm
from vanishing_tails.core.metrics import pass_at_k
from vanishing_tails.core.rl import group_advantages, kl_regularised_optimum

from . import task as fm

CACHE_ENV = "VANISHING_TAILS_CACHE"


# ---------------------------------------------------------------------- pretraining + cache
CACHE_VERSION = 1  # bump when anything that changes the trained weights changes


@dataclass(frozen=True)
class ModelSize:
    """A TinyTransformer's shape; ``name`` labels it in frames and figures."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int = 4

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"model size {self.name!r}: d_model, n_layers and n_heads must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"model size {self.name!r}: d_model ({self.d_model}) must be divisible "
                             f"by n_heads ({self.n_heads})")


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretrained checkpoint (and so its cache key)."""

    task: fm.Task
    proportions: tuple[float, ...]
    size: ModelSize
    n_corpus: int = 50_000
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "proportions", tuple(float(x) for x in fm.check_proportions(self.proportions)))
        if self.n_corpus < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("n_corpus, steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def key(self, device: str = "cpu") -> str:
        """sha256 of the configuration (and the device type and torch version, which change the
        floating-point path): the checkpoint's file name."""
        d = asdict(self)
        d["size"].pop("name")  # a label, not part of the weights
        d.update(version=CACHE_VERSION, device=str(device), torch=torch.__version__.split("+")[0],
                 code=_code_digest())
        blob = json.dumps(d, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:24]


def _code_digest() -> str:
    """sha256 of the source files that build the corpus and train the model (formats.py,
    lm.py): editing either invalidates every cached checkpoint instead of serving a stale one."""
    h = hashlib.sha256()
    for mod in (fm, lm):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$VANISHING_TAILS_CACHE`` or ``<root>/_build/cache/checkpoints`` with ``<root>`` =
    ``$VANISHING_TAILS_ROOT`` or the checkout this package lives in."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    root = os.environ.get("VANISHING_TAILS_ROOT")
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    return root / "_build" / "cache" / "checkpoints"


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(cfg: PretrainConfig, device="cpu") -> lm.TinyTransformer:
    """The untrained model of ``cfg`` (weights from ``cfg.seed``)."""
    s = cfg.size
    return lm.build_model("transformer", len(cfg.task.vocab), seed=cfg.seed, device=device,
                          d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads,
                          max_len=cfg.task.seq_len)


def pretrain(cfg: PretrainConfig, *, cache_dir: str | Path | None | bool = None,
             device="cpu") -> tuple[lm.TinyTransformer, dict]:
    """Train ``cfg``'s model from scratch on its format mixture, or load it from the cache.

    Teacher-forced next-token training (:func:`vanishing_tails.core.lm.train_lm`) on
    ``cfg.n_corpus`` sequences of :func:`~vanishing_tails.experiments.formats.task.pretraining_corpus`.
    ``cache_dir=None`` uses :func:`default_cache_dir`; ``False`` disables the cache.
    On the CPU the same ``cfg`` gives bit-identical weights (tested), so a cached
    checkpoint is exactly what retraining would give. Returns (model in eval mode,
    info with ``cached``, ``key``, ``loss``, ``n_parameters``).
    """
    dev = lm.resolve_device(device)
    key = cfg.key(dev.type)
    path = None
    if cache_dir is not False:
        path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = path / f"{key}.pt"
    model = build(cfg, dev)
    if path is not None and path.exists():
        try:
            blob = torch.load(path, map_location=dev, weights_only=True)
            model.load_state_dict(blob["state"])
            model.eval()
            return model, {"cached": True, "key": key, "loss": float(blob["loss"]),
                           "n_parameters": lm.n_parameters(model)}
        except Exception:  # a corrupt or foreign file: retrain and overwrite it
            model = build(cfg, dev)
    data, _ = fm.pretraining_corpus(cfg.task, cfg.n_corpus, cfg.proportions, seed=cfg.seed)
    log = lm.train_lm(model, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      seed=cfg.seed + 1)
    loss = float(log["loss"].iloc[-1])
    if path is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _atomic_save({"state": state, "loss": loss}, path)
    model.eval()
    return model, {"cached": False, "key": key, "loss": loss, "n_parameters": lm.n_parameters(model)}


# ---------------------------------------------------------------------- reading a policy
@torch.no_grad()
def format_probabilities(task: fm.Task, model: torch.nn.Module, prompts: torch.Tensor,
                         batch: int = 1024) -> np.ndarray:
    """Exact probability of each format (and of "other") per prompt, ``[N, len(FORMATS)+1]``.

    The format is fixed by the first completion token (:func:`formats.classify`), so
    P(format | x) is a sum over the next-token distribution after the prompt.
    """
    dev = next(model.parameters()).device
    groups = [task.ids.first[f] for f in fm.FORMATS]
    out = []
    for i in range(0, len(prompts), batch):
        p = torch.softmax(model(prompts[i:i + batch].to(dev))[:, -1].float(), -1).cpu().numpy()
        cols = [p[:, g].sum(1) for g in groups]
        cols.append(1.0 - np.sum(cols, axis=0))
        out.append(np.stack(cols, 1))
    return np.clip(np.concatenate(out), 0.0, 1.0)


def _majority_correct(answers: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """maj@G per row of ``answers`` [N, G]: the most frequent well-formed answer (ties: the
    smallest) equals ``truth``. Malformed answers do not vote; a row with none scores 0."""
    valid = answers != fm.MALFORMED
    lo = int(answers[valid].min()) if valid.any() else 0
    hi = int(answers[valid].max()) if valid.any() else 0
    width = hi - lo + 1
    shifted = np.where(valid, answers - lo, width)  # malformed -> an extra bin
    counts = np.zeros((len(answers), width + 1), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(answers)), answers.shape[1]), shifted.ravel()), 1)
    counts = counts[:, :width]
    vote = counts.argmax(1) + lo
    return (counts.max(1) > 0) & (vote == truth)


@dataclass
class Samples:
    """G samples for each of N prompts: ``seq`` [N*G, T], ``fmt`` [N*G], ``answer``, ``reward``."""

    seq: torch.Tensor
    fmt: np.ndarray
    answer: np.ndarray
    reward: np.ndarray
    group: int


def draw(task: fm.Task, model, prompts: torch.Tensor, truth: np.ndarray, group: int, *,
         generator: torch.Generator, temperature: float = 1.0) -> Samples:
    """``group`` samples per prompt (contiguous), classified and checked."""
    rep = prompts.repeat_interleave(group, 0)
    seq = lm.sample(model, rep, task.max_completion_len, generator=generator,
                    temperature=temperature, eos_id=task.vocab.eos_id, pad_id=task.vocab.pad_id)
    comp = seq[:, task.prompt_len:]
    ans = fm.extract_answers(task, comp)
    truth = np.repeat(np.asarray(truth), group)
    return Samples(seq, fm.classify(task, comp), ans, (ans == truth).astype(float), group)


def summarise(s: Samples, truth: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Format shares, accuracy by format, pass@k (unbiased, Chen et al. 2021) and maj@k for
    each k in ``ks`` (majority vote over the first k samples of each prompt)."""
    G = s.group
    n = len(s.reward) // G
    r = s.reward.reshape(n, G)
    out: dict[str, float] = {}
    for j, f in enumerate((*fm.FORMATS, fm.OTHER)):
        sel = s.fmt == j
        out[f"share_{f}"] = float(sel.mean())
        if f != fm.OTHER:
            out[f"acc_{f}"] = float(s.reward[sel].mean()) if sel.any() else float("nan")
    c = r.sum(1)
    ans = s.answer.reshape(n, G)
    for k in ks:
        out[f"pass@{k}"] = float(np.mean(pass_at_k(G, c, k)))
        out[f"maj@{k}"] = float(_majority_correct(ans[:, :k], np.asarray(truth)).mean())
    return out


# ---------------------------------------------------------------------- RL
def policy_gradient_loss(logp: torch.Tensor, logp_ref: torch.Tensor, rewards: torch.Tensor,
                         beta: float, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRPO-style loss with the KL penalty folded into the reward (module docstring).

    ``logp`` [N] (differentiable) and ``logp_ref`` [N] are sequence log-probabilities of
    N = problems x ``group_size`` samples, grouped contiguously; ``rewards`` [N].
    Returns (loss, per-sample log pi - log pi_ref, whose mean estimates KL(pi || pi_ref)).
    The language-model loop :func:`rl_run` and the format bandit :func:`bandit_pg` both
    use it, so the oracle checks the code the chapter runs.
    """
    check_beta(beta)
    log_ratio = logp.detach() - logp_ref
    shaped = rewards - beta * log_ratio
    adv = group_advantages(shaped.view(-1, group_size), normalize=False).reshape(-1)
    return -(adv * logp).mean(), log_ratio


def check_beta(beta, name: str = "beta") -> float:
    """A KL strength must be a positive number."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) or not beta > 0:
        raise ValueError(f"{name} (the KL strength) must be > 0; got {beta!r}")
    return float(beta)


@dataclass(frozen=True)
class RLConfig:
    """One RL run: ``steps`` updates of ``batch_problems`` problems x ``group_size`` samples."""

    beta: float
    steps: int = 40
    batch_problems: int = 16
    group_size: int = 8
    lr: float = 1e-3
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_beta(self.beta)
        if self.steps < 1 or self.batch_problems < 1:
            raise ValueError("steps and batch_problems must be >= 1")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO compares samples), got {self.group_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def evaluate(task: fm.Task, model: torch.nn.Module, problems: fm.Problems, *, samples: int = 32,
             ks: Sequence[int] | None = None, seed: int = 0, temperature: float = 1.0,
             subsets: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Sample ``samples`` completions for each of ``problems`` and summarise them
    (:func:`summarise`: shares, accuracy by format, pass@k and maj@k for ``ks``, default the
    powers of two up to ``samples``) plus the exact format probabilities ``p_<format>``.

    ``subsets`` maps a name to a boolean mask over ``problems``; each subset's summary is
    added with keys ``<name>/<quantity>`` (from the same samples).
    """
    ks = list(ks) if ks is not None else [2**i for i in range(20) if 2**i <= samples]
    prompts = fm.encode_prompts(task, problems)
    s = draw(task, model, prompts, problems.answer, samples,
             generator=torch.Generator().manual_seed(seed), temperature=temperature)
    row = summarise(s, problems.answer, ks)
    pf = format_probabilities(task, model, prompts).mean(0)
    row.update({f"p_{f}": float(v) for f, v in zip((*fm.FORMATS, fm.OTHER), pf)})
    for name, mask in (subsets or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(problems),):
            raise ValueError(f"subset {name!r} must be a mask over the {len(problems)} problems")
        if not mask.any():
            continue
        rows = np.repeat(mask, samples)
        sub = Samples(s.seq[torch.as_tensor(rows)], s.fmt[rows], s.answer[rows], s.reward[rows], samples)
        row.update({f"{name}/{q}": v for q, v in summarise(sub, problems.answer[mask], ks).items()})
    return row


def rl_run(task: fm.Task, ref_model: torch.nn.Module, problems: fm.Problems, cfg: RLConfig, *,
           ks: Sequence[int] = (1, 4)) -> tuple[pd.DataFrame, torch.nn.Module]:
    """GRPO-style RL from ``ref_model`` on ``problems`` (the RL set, visited in a seeded order).

    Returns ``(steps, policy)``. ``steps`` has one row per step x quantity (long form;
    columns ``step``, ``epoch`` (problems seen before the step / len(problems)),
    ``quantity``, ``value``): on the step's own samples the format shares
    ``share_<format>``, accuracy by format ``acc_<format>``, pass@1 (= mean reward),
    pass@k and maj@k for ``k`` in ``ks`` (k <= group_size), and ``kl``, the mean of
    log pi - log pi_ref (an unbiased estimate of KL(pi || pi_ref) on the step's prompts);
    on the step's prompts the exact format probabilities ``p_<format>``
    (:func:`format_probabilities`). Everything is measured *before* the step's update, so
    step 0 describes the pretrained model. The reference model is never modified.
    """
    dev = next(ref_model.parameters()).device
    policy = copy_model(ref_model)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n = len(problems)
    G, B, P = cfg.group_size, cfg.batch_problems, task.prompt_len
    order = np.concatenate([rng.permutation(n) for _ in range(cfg.steps * B // n + 1)])
    prompts_all = fm.encode_prompts(task, problems)
    ks = [k for k in ks if k <= G]
    rows = []
    for step in range(cfg.steps):
        idx = order[step * B:(step + 1) * B]
        prompts = prompts_all[idx]
        truth = problems.answer[idx]
        pf = format_probabilities(task, policy, prompts).mean(0)
        s = draw(task, policy, prompts, truth, G, generator=gen, temperature=cfg.temperature)
        seq = s.seq.to(dev)
        span = torch.zeros_like(seq, dtype=torch.bool)
        span[:, P:] = True
        policy.train()
        logp = lm.sequence_logprob(policy, seq, span)
        with torch.no_grad():
            logp_ref = lm.sequence_logprob(ref_model, seq, span)
        r = torch.as_tensor(s.reward, dtype=torch.float32, device=dev)
        loss, log_ratio = policy_gradient_loss(logp, logp_ref, r, cfg.beta, G)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        policy.eval()
        row = summarise(s, truth, ks)
        row.update({f"p_{f}": float(v) for f, v in zip((*fm.FORMATS, fm.OTHER), pf)})
        row["kl"] = float(log_ratio.mean())
        epoch = step * B / n
        rows.extend({"step": step, "epoch": epoch, "quantity": q, "value": v} for q, v in row.items())
    return pd.DataFrame(rows), policy


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    """A trainable deep copy (the reference model stays frozen and untouched)."""
    import copy

    new = copy.deepcopy(model)
    for p in new.parameters():
        p.requires_grad_(True)
    return new


# ---------------------------------------------------------------------- the analytic companion
def format_optimum(p_ref: np.ndarray, accuracy: np.ndarray, beta: float, *,
                   within_format: bool = True) -> np.ndarray:
    """Format shares of the KL-regularised optimum pi* ∝ pi_ref exp(r / beta) (``korbak2022kl``).

    ``p_ref`` [..., F] are the reference model's format shares and ``accuracy`` [..., F]
    its accuracy within each format (reward 1 if correct).

    * ``within_format=False`` — the formats are arms with reward r_j = accuracy_j and
      the policy only picks the arm: p*_j ∝ p_ref,j exp(r_j / beta) (the form the notes
      quote; also the replicator path of plain policy gradient at "time" 1/beta).
    * ``within_format=True`` — the optimum over whole sequences, which may also move mass
      to the correct answers inside a format: summing pi_ref e^{r/beta} over the correct
      (r=1) and wrong (r=0) sequences of format j gives
      p*_j ∝ p_ref,j (1 - a_j + a_j e^{1/beta}).

    Both come from :func:`vanishing_tails.core.rl.kl_regularised_optimum`.
    """
    beta = check_beta(beta)
    p_ref = np.asarray(p_ref, dtype=float)
    a = np.clip(np.asarray(accuracy, dtype=float), 0.0, 1.0)
    if not within_format:
        return kl_regularised_optimum(p_ref, a, beta)
    outcomes = np.concatenate([p_ref * a, p_ref * (1 - a)], axis=-1)  # (format, correct) then (format, wrong)
    reward = np.concatenate([np.ones_like(a), np.zeros_like(a)], axis=-1)
    p = kl_regularised_optimum(outcomes, reward, beta)
    F_ = p_ref.shape[-1]
    return p[..., :F_] + p[..., F_:]


def bandit_pg(p_ref: np.ndarray, accuracy: np.ndarray, beta: float, *, steps: int = 1500,
              group_size: int = 256, lr: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The format choice alone as a bandit, trained with :func:`policy_gradient_loss`.

    The policy is softmax(theta) over formats, started at ``p_ref``; each step draws
    ``group_size`` formats, a Bernoulli(accuracy_j) reward for each, and takes one Adam
    step (learning rate ``lr``, decayed as 1/sqrt(t) so the iterate settles). Its fixed
    point is ``format_optimum(p_ref, accuracy, beta, within_format=False)`` — the oracle
    for the loss chapter 4's language models are trained with. Returns the share of each
    format per step (long form: ``step``, ``format``, ``share``).
    """
    check_beta(beta)
    p_ref = np.asarray(p_ref, dtype=float)
    if p_ref.ndim != 1 or np.any(p_ref <= 0) or abs(p_ref.sum() - 1) > 1e-6:
        raise ValueError(f"p_ref must be a positive probability vector, got {p_ref}")
    acc = np.asarray(accuracy, dtype=float)
    if acc.shape != p_ref.shape or np.any((acc < 0) | (acc > 1)):
        raise ValueError(f"accuracy must be in [0, 1], one per arm; got {acc}")
    gen = torch.Generator().manual_seed(seed)
    log_ref = torch.log(torch.as_tensor(p_ref, dtype=torch.float64))
    theta = log_ref.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / np.sqrt(1.0 + t / 100.0))
    acc_t = torch.as_tensor(acc, dtype=torch.float64)
    shares = np.empty((steps + 1, len(p_ref)))
    shares[0] = p_ref
    for t in range(steps):
        logp_all = torch.log_softmax(theta, 0)
        arm = torch.multinomial(logp_all.exp().detach(), group_size, replacement=True, generator=gen)
        r = (torch.rand(group_size, generator=gen, dtype=torch.float64) < acc_t[arm]).double()
        loss, _ = policy_gradient_loss(logp_all[arm], log_ref[arm], r, beta, group_size)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        shares[t + 1] = torch.softmax(theta.detach(), 0).numpy()
    labels = np.array(fm.FORMATS if len(p_ref) == len(fm.FORMATS) else [str(i) for i in range(len(p_ref))])
    return pd.DataFrame({"step": np.repeat(np.arange(steps + 1), len(p_ref)),
                         "format": np.tile(labels, steps + 1), "share": shares.ravel()})


# ---------------------------------------------------------------------- the chapter's experiment
def experiment(task: fm.Task, proportions, sizes: Sequence[ModelSize], betas: Sequence[float], *,
               n_seeds: int, seed: int, n_pretrain: int = 1, pretrain_steps: int = 700,
               pretrain_batch: int = 64, pretrain_lr: float = 3e-3, n_corpus: int = 50_000,
               n_rl: int = 720, n_eval: int = 96, eval_samples: int = 16, rl_steps: int = 60,
               batch_problems: int = 12, group_size: int = 8, rl_lr: float = 1e-3,
               cache_dir=None, device="cpu", progress=None) -> dict[str, pd.DataFrame]:
    """Chapter 4's grid: for each size, ``n_pretrain`` pretrained models (cached), and from
    each, ``n_seeds`` RL runs for every KL strength in ``betas``; evaluation before/after.

    Seeds derive from ``np.random.SeedSequence(seed)``. The RL problems (``n_rl``) and the
    evaluation problems (``n_eval``) come from the held-out split and are the same for
    every size, so sizes are compared on the same problems; the i-th RL run of a
    pretrained model uses the same seed for every beta (common random numbers), so the
    KL comparison is paired. Returns long frames:

    * ``steps``: size, pretrain, seed, run, beta, step, epoch, quantity, value (:func:`rl_run`);
    * ``evals``: size, pretrain, seed, run, beta, when ("before" | "after"), quantity, value,
      on ``n_eval`` problems of which half (when ``task.code_misreads``) contain a dropped verb;
      quantities prefixed ``misread/`` (``clean/``) are measured on the evaluation problems
      that do (do not) contain a verb the code corpus drops;
    * ``models``: size, pretrain, d_model, n_layers, n_heads, n_parameters, cached, pretrain_loss.
    """
    proportions = fm.check_proportions(proportions)
    betas = [check_beta(b, "betas") for b in betas]
    if n_seeds < 1 or n_pretrain < 1:
        raise ValueError(f"n_seeds and n_pretrain must be >= 1, got {n_seeds}, {n_pretrain}")
    s_prob, s_models, s_rl = np.random.SeedSequence(seed).spawn(3)
    probs = fm.generate_problems(task, n_rl + 8 * n_eval, seed=int(s_prob.generate_state(1)[0]),
                                 split="heldout")
    rl_set = probs.take(np.arange(n_rl))
    pool = probs.take(np.arange(n_rl, len(probs)))
    # a balanced evaluation set: half the problems contain a verb the code corpus drops
    # (only another format, or a repaired translation, can solve them), half do not
    bad = np.isin(pool.verb_words(), task.code_misreads).any(axis=1)
    n_bad = min(n_eval // 2, int(bad.sum())) if task.code_misreads else 0
    ev_set = pool.take(np.sort(np.concatenate([np.flatnonzero(bad)[:n_bad],
                                               np.flatnonzero(~bad)[:n_eval - n_bad]])))
    # the evaluation problems code cannot solve (a verb its corpus drops) and the others
    misread = np.isin(ev_set.verb_words(), task.code_misreads).any(axis=1)
    subsets = {"misread": misread, "clean": ~misread}
    model_seeds = s_models.spawn(len(sizes) * n_pretrain)
    run_seeds = s_rl.spawn(len(sizes) * n_pretrain)
    steps, evals, models = [], [], []
    for k, (size, pre) in enumerate((sz, j) for sz in sizes for j in range(n_pretrain)):
        cfg = PretrainConfig(task, tuple(proportions), size, n_corpus=n_corpus, steps=pretrain_steps,
                             batch_size=pretrain_batch, lr=pretrain_lr,
                             seed=int(model_seeds[k].generate_state(1)[0]) % 2**31)
        model, info = pretrain(cfg, cache_dir=cache_dir, device=device)
        models.append({"size": size.name, "pretrain": pre, "d_model": size.d_model,
                       "n_layers": size.n_layers, "n_heads": size.n_heads,
                       "n_parameters": info["n_parameters"], "cached": info["cached"],
                       "pretrain_loss": info["loss"]})
        eval_seed = int(s_prob.generate_state(2)[1]) % 2**31
        before = evaluate(task, model, ev_set, samples=eval_samples, seed=eval_seed, subsets=subsets)
        seeds_k = [int(x.generate_state(1)[0]) % 2**31 for x in run_seeds[k].spawn(n_seeds)]
        for i, rs in enumerate(seeds_k):
            for beta in betas:
                rcfg = RLConfig(beta=beta, steps=rl_steps, batch_problems=batch_problems,
                                group_size=group_size, lr=rl_lr, seed=rs)
                st, policy = rl_run(task, model, rl_set, rcfg)
                ids = dict(size=size.name, pretrain=pre, seed=i, run=pre * n_seeds + i, beta=beta)
                steps.append(st.assign(**ids))
                after = evaluate(task, policy, ev_set, samples=eval_samples, seed=eval_seed,
                                 subsets=subsets)
                for when, row in (("before", before), ("after", after)):
                    evals.append(pd.DataFrame({**ids, "when": when, "quantity": list(row),
                                               "value": list(row.values())}))
                if progress:
                    progress(size.name, pre, i, beta)
    cols = ["size", "pretrain", "seed", "run", "beta"]
    steps_df = pd.concat(steps, ignore_index=True)
    evals_df = pd.concat(evals, ignore_index=True)
    return {"steps": steps_df[cols + [c for c in steps_df.columns if c not in cols]],
            "evals": evals_df[cols + [c for c in evals_df.columns if c not in cols]],
            "models": pd.DataFrame(models)}


def wide(frame: pd.DataFrame, index: Sequence[str]) -> pd.DataFrame:
    """Long ``quantity``/``value`` frame -> one column per quantity (for plotting and claims)."""
    return frame.pivot(index=list(index), columns="quantity", values="value").reset_index().rename_axis(columns=None)
