"""The value model: what an on-time answer is worth, so that answer quality can change a
decision instead of only scaling the objective.

If value were quality x tokens, a variant that answers right 1.01-1.11x as often could
never pay for serving 4.5-8x fewer tokens per GPU (issue 13). What flips the choice is
that a wrong answer *costs* something. With ``p`` the probability that a variant's answer
is right and ``c`` the cost of a wrong answer in units of a right answer's value ``R``:

    value per answer  v(p, c) = p R - (1 - p) c R

and value-weighted goodput (DESIGN section 2) counts every on-time token at its answer's
value, answers weighted by their tokens as token goodput already is:

    V = sum over variants of  G_i x v(p_i, c)

``G_i`` the variant's on-time (SLO-meeting) tokens/s. A variant whose quality is below the
policy's floor counts zero (and the planner gives it no traffic beyond its minShare).

Published quality figures this is built on (fractions of right answers):

- Meta, Llama-3.1 instruct model card (github.com/meta-llama/llama-models,
  models/llama3_1/MODEL_CARD.md, "Instruction tuned models"): MMLU-Pro (5-shot CoT)
  48.3 / 66.4 / 73.3 and GPQA (0-shot) 30.4 / 46.7 / 50.7 for 8B / 70B / 405B.
- Neural Magic / Red Hat quantized 405B model cards on Hugging Face
  (neuralmagic/Meta-Llama-3.1-405B-Instruct-quantized.w4a16 and -FP8): about 99.3 %
  recovery of the unquantized average with INT4 weights (W4A16), about 100 % with FP8.
  At 64K-token inputs 4-bit models lose far more (arXiv 2505.20276): a variant's
  ``quality.classes`` give lower scores to long inputs (``class_quality``).

Check (tested): by MMLU-Pro the 70B's value per answer turns negative at
c = 0.664 / 0.336 = 1.98, the 405B's at c = 0.733 / 0.267 = 2.745 (2.675 for W4A16 at
99.3 % recovery, p = 0.728).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from goodput.api.spec import ValueModel

# Meta Llama-3.1 instruct model card (see the module docstring), as fractions.
LLAMA_31_MMLU_PRO = {"8b": 0.483, "70b": 0.664, "405b": 0.733}
LLAMA_31_GPQA = {"8b": 0.304, "70b": 0.467, "405b": 0.507}
# Neural Magic / Red Hat quantized Llama-3.1-405B-Instruct cards: recovery of the
# unquantized average score.
RECOVERY_W4A16 = 0.993
RECOVERY_FP8 = 1.0


def value_per_answer(quality: float, wrong_answer_cost: float, right_answer: float = 1.0) -> float:
    """``p R - (1 - p) c R``: the expected value of one answer of a variant whose answers
    are right with probability ``quality``. Rises with quality (slope ``(1 + c) R``),
    falls with the wrong-answer cost (slope ``-(1 - p) R``)."""
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality {quality} must be a probability in [0, 1]")
    if wrong_answer_cost < 0:
        raise ValueError(f"wrong-answer cost {wrong_answer_cost} must be >= 0")
    return (quality - (1.0 - quality) * wrong_answer_cost) * right_answer


def answer_value(quality: float, model: ValueModel) -> float:
    """Value per answer under a policy's value model; zero below its quality floor
    (answers too poor to serve count nothing, as ``quality.floor`` does for goodput)."""
    if quality < model.quality_floor:
        return 0.0
    return value_per_answer(quality, model.wrong_answer_cost, model.right_answer)


def value_goodput(on_time_tokens_per_s: float, quality: float, model: ValueModel) -> float:
    """One variant's value-weighted goodput: on-time tokens/s x value per answer."""
    return on_time_tokens_per_s * answer_value(quality, model)


def total_value_goodput(variants: dict[str, tuple[float, float]], model: ValueModel) -> float:
    """Sum over variants of ``value_goodput``; ``variants`` maps a name to
    (on-time tokens/s, quality)."""
    return sum(value_goodput(g, p, model) for g, p in variants.values())


def class_quality(
    base: float, classes: Sequence[tuple[int, float]], mean_input_tokens: float
) -> float:
    """The quality of a variant over its mix of requests when quality depends on the
    request class: requests with at least ``min_tokens`` input tokens (``classes``, in
    increasing order) are right with that class's score, shorter ones with ``base``.
    Each class counts by the share of requests in it, with input lengths exponential
    around the observed mean (the planner's prompt-length model, goodput.planner.model):
    ``P(L >= N) = exp(-N / mean)``. Value per answer is linear in quality, so the
    value of the mix is the value at this mean quality (answers are weighted by their
    output tokens, taken as independent of the input length).

    Why per class: 4-bit models lose far more on long inputs than benchmarks at short
    ones show: on inputs of 64K tokens and more up to 59 % of their accuracy, 32 % for
    Llama-3.1-70B under BNB-nf4, against about 0.8 % for 8-bit formats (arXiv
    2505.20276, "Does quantization affect models' performance on long-context tasks?");
    Neural Magic's RULER runs keep W4A16 models above 99 % to 64K and see losses at 128K
    (neuralmagic.com/blog/how-well-do-quantized-models-handle-long-context-tasks)."""
    if not classes:
        return base
    if mean_input_tokens <= 0:
        return base

    def above(n: int) -> float:
        return math.exp(-n / mean_input_tokens)

    out = base * (1.0 - above(classes[0][0]))
    for (n, score), nxt in zip(classes, [*classes[1:], None], strict=True):
        upper = above(nxt[0]) if nxt is not None else 0.0
        out += score * (above(n) - upper)
    return min(max(out, 0.0), 1.0)


def negative_above(quality: float) -> float:
    """The wrong-answer cost above which a variant loses value per answer: ``p / (1 - p)``
    (``inf`` for a variant that is always right)."""
    if quality >= 1.0:
        return math.inf
    return quality / (1.0 - quality)


def break_even_cost(
    tokens_a: float, quality_a: float, tokens_b: float, quality_b: float
) -> float | None:
    """The wrong-answer cost ``c >= 0`` at which variants A and B deliver the same value,
    each at its own on-time token rate: the root of
    ``G_a (p_a - (1 - p_a) c) = G_b (p_b - (1 - p_b) c)``, i.e.

        c = (G_a p_a - G_b p_b) / (G_a (1 - p_a) - G_b (1 - p_b)).

    ``None`` when the two lines do not cross at a non-negative cost (one variant is at
    least as valuable at every c, or they are equal everywhere). Below the root the one
    with more right answers per second wins, above it the one with fewer wrong answers
    per second (the right answer's value ``R`` scales both sides and cancels)."""
    denominator = tokens_a * (1.0 - quality_a) - tokens_b * (1.0 - quality_b)
    numerator = tokens_a * quality_a - tokens_b * quality_b
    if abs(denominator) <= 1e-12 * max(tokens_a, tokens_b, 1e-12):
        return None
    c = numerator / denominator
    return c if c >= 0.0 else None


__all__ = [
    "LLAMA_31_GPQA",
    "LLAMA_31_MMLU_PRO",
    "RECOVERY_FP8",
    "RECOVERY_W4A16",
    "answer_value",
    "break_even_cost",
    "class_quality",
    "negative_above",
    "total_value_goodput",
    "value_goodput",
    "value_per_answer",
]
