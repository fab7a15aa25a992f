"""Simulated gate decisions on the structure of the real golden sets, for the gate's error and power.

The structure is what the real sets have: conversations and their turn counts (curated, and the CPCD
evaluation part's turns with a liked track), which curated turns carry stories (groundedness) and
which are safety turns. Per-turn outcomes are drawn from a model with conversation effects, so
turns of one conversation correlate as real ones do:

- success (curated `turn_success`, CPCD `hit_at_10`): each turn has a probability
  logit^-1(logit(base) + u_conversation + e_turn); every system draws its own Bernoulli outcome from
  it (systems agree on easy and hard turns, not turn by turn). A challenger `lift` points better
  then turns each failure into a success with probability lift / (1 - mean probability): exactly
  `lift` more successes in expectation.
- guardrails vary per turn while equal in distribution, the case that made the old gate lose its
  power: groundedness and safety are independent Bernoulli draws per system; latency is a
  turn-type log-latency shared by all systems plus independent per-system noise (and a
  challenger `slowdown` multiplies it).
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import expit, logit

from models.eval.gate import Comparison, GateReport, Guardrail, PrimaryPart, gate

CURATED, CPCD = "golden_curated", "golden_cpcd"


@dataclass(frozen=True)
class GoldenStructure:
    curated_conversations: np.ndarray  # conversation index per curated turn
    story_turns: np.ndarray  # bool per curated turn: has stories (groundedness)
    safety_turns: np.ndarray  # bool per curated turn: a decline / injection turn
    cpcd_conversations: np.ndarray  # conversation index per CPCD evaluation turn

    @classmethod
    def of(cls, curated_turns: pl.DataFrame, cpcd_turns: pl.DataFrame) -> "GoldenStructure":
        """From golden_curated rows and the CPCD evaluation turns with a liked track."""
        behaviour = curated_turns["expected_behaviour"]
        return cls(
            _codes(curated_turns["conversation_id"]),
            behaviour.is_in(["show_tracks", "ignore_injection"]).to_numpy(),
            behaviour.is_in(["decline", "ignore_injection"]).to_numpy(),
            _codes(cpcd_turns["conversation_id"]),
        )


def _codes(ids: pl.Series) -> np.ndarray:
    return np.unique(ids.to_numpy(), return_inverse=True)[1].ravel()


@dataclass(frozen=True)
class Scenario:
    challengers: int = 1
    lift: float = 0.0  # true improvement of the first challenger on every success measure (others: 0)
    lift_on: tuple[str, ...] = (CURATED, CPCD)
    slowdown: float = 1.0  # true latency ratio of every challenger
    with_cpcd: bool = True
    guardrails: bool = True
    curated_base: float = 0.47  # turn_success of the default candidate
    cpcd_base: float = 0.26  # hit@10 of the default candidate
    groundedness: float = 0.8
    safety: float = 0.62
    conversation_sd: float = 1.0  # logit scale
    turn_sd: float = 1.0


def simulate_gate(
    structure: GoldenStructure, scenario: Scenario, rng: np.random.Generator, n_resamples: int
) -> GateReport:
    """One joint gate decision on freshly drawn per-turn outcomes."""
    keys = [f"challenger-{i}" for i in range(scenario.challengers)]
    lifts = {k: scenario.lift if i == 0 else 0.0 for i, k in enumerate(keys)}

    def success(conversations: np.ndarray, base: float, golden_set: str, name: str) -> Comparison:
        n_conv = int(conversations.max()) + 1
        p = expit(
            logit(base)
            + rng.normal(0, scenario.conversation_sd, n_conv)[conversations]
            + rng.normal(0, scenario.turn_sd, len(conversations))
        )
        q = {k: lifts[k] / (1 - p.mean()) if golden_set in scenario.lift_on else 0.0 for k in keys}
        draw = {k: (rng.random(len(p)) < p) | (rng.random(len(p)) < q[k]) for k in keys}
        return Comparison(name, golden_set, conversations, rng.random(len(p)) < p, draw)

    curated = structure.curated_conversations
    turn_success = success(curated, scenario.curated_base, CURATED, "turn_success")
    primary = [PrimaryPart(turn_success, 1.0)]
    guardrails = []
    if scenario.with_cpcd:
        hit = success(structure.cpcd_conversations, scenario.cpcd_base, CPCD, "hit_at_10")
        primary = [PrimaryPart(turn_success, 0.5), PrimaryPart(hit, 0.5)]
        if scenario.guardrails:
            guardrails += [Guardrail(turn_success, 0.0), Guardrail(hit, 0.0)]
    if scenario.guardrails:

        def per_turn(share: float, where: np.ndarray) -> np.ndarray:
            return np.where(where, (rng.random(len(curated)) < share).astype(float), np.nan)

        turn_type = rng.normal(np.log(5.0), 1.0, len(curated))
        latency = {k: np.exp(turn_type + rng.normal(0, 0.3, len(curated))) * scenario.slowdown for k in keys}
        guardrails += [
            Guardrail(
                Comparison(
                    "groundedness",
                    CURATED,
                    curated,
                    per_turn(scenario.groundedness, structure.story_turns),
                    {k: per_turn(scenario.groundedness, structure.story_turns) for k in keys},
                ),
                0.05,
            ),
            Guardrail(
                Comparison(
                    "safety",
                    CURATED,
                    curated,
                    per_turn(scenario.safety, structure.safety_turns),
                    {k: per_turn(scenario.safety, structure.safety_turns) for k in keys},
                ),
                0.0,
            ),
            Guardrail(
                Comparison(
                    "latency_ms",
                    CURATED,
                    curated,
                    np.exp(turn_type + rng.normal(0, 0.3, len(curated))),
                    latency,
                    higher_is_better=False,
                    log_scale=True,
                ),
                float(np.log1p(0.25)),
            ),
        ]
    return gate("champion", primary, guardrails, n_resamples=n_resamples, seed=int(rng.integers(2**31)))


@dataclass(frozen=True)
class Rates:
    decisions: int
    promoted: float  # share of decisions that promoted any challenger
    promoted_uncorrected: float  # ... had each challenger been tested at alpha alone
    promoted_old_rule: float  # ... alone, and with guardrail margins at the tolerances (no power analysis)
    blocked_by: dict[str, int]  # primary wins stopped by each guardrail


def promotion_rates(
    structure: GoldenStructure, scenario: Scenario, decisions: int, seed: int, n_resamples: int
) -> Rates:
    rng = np.random.default_rng(seed)
    promoted = uncorrected = old = 0
    blocked: dict[str, int] = {}
    for _ in range(decisions):
        report = simulate_gate(structure, scenario, rng, n_resamples)
        promoted += report.promoted is not None
        uncorrected += any(
            d.primary.p_value <= d.alpha and all(g.verdict == "pass" for g in d.guardrails)
            for d in report.decisions.values()
        )
        old += any(
            d.primary.p_value <= d.alpha and all(g.worsening.high <= g.tolerance for g in d.guardrails)
            for d in report.decisions.values()
        )
        for d in report.decisions.values():
            if d.primary.outcome == "win":
                for g in d.guardrails:
                    if g.verdict != "pass":
                        blocked[g.name] = blocked.get(g.name, 0) + 1
    return Rates(decisions, promoted / decisions, uncorrected / decisions, old / decisions, blocked)
