"""The online side of evaluation: which candidates an A/B test compares, the simulated test itself,
the offline-online correlation, and the MLflow run that puts it beside the offline evaluation.

Listeners are randomised by a salted hash of their id (50/50). The pre-period (every listener served by
the control before the test) gives each listener's pre-experiment value of each metric: the CUPED
covariate of that metric (for the like rate: the pre-period like rate). The unit of analysis is the
listener: `analyze_experiment_frame` averages their sessions.

In order: the power plan from the pre-period alone (each metric's minimum detectable effect at the arm
sizes, at ALPHA / 3 for three metrics); then the experiment, looked at after every round of sessions
with the always-valid mSPRT (Holm across the metrics at each look, confidence sequences at ALPHA / 3),
so stopping at any look is allowed; then the fixed-horizon CUPED analysis at the planned end, Holm
across the metrics.
"""

import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import polars as pl
from mlflow import MlflowClient
from scipy import stats

from models.eval.tracking import EXPERIMENTS as OFFLINE_EXPERIMENTS
from models.eval.tracking import fingerprint, log_per_item_table, log_run_once, table_hash
from models.feedback.experiment import (
    ExperimentResult,
    PowerPlan,
    always_valid,
    analyze_experiment_frame,
    holm_adjusted,
    plan_power,
)
from models.feedback.interactions import session_metrics
from models.feedback.simulator import ListenerPopulation, SlateServer, simulate
from models.lifecycle.candidates import Candidate
from models.lifecycle.registry import ASSISTANT_MODEL, CHALLENGER, CHAMPION, assistant_by_alias

EXPERIMENT = "online-ab"
METRICS = ("like_rate", "skip_rate", "requests")  # requests per session is the session length
ALPHA = 0.05  # two-sided, family-wise over METRICS
WEAKER_RETRIEVER = {"dense": "hybrid", "hybrid": "bm25", "bm25": "tags", "tags": "bm25"}


@dataclass(frozen=True)
class Arms:
    control: Candidate
    treatment: Candidate
    how: str  # how the treatment was chosen, for the UI


def resolve_arms(client: MlflowClient) -> Arms:
    """setlist-assistant@champion (control) vs @challenger, the runner-up the gate left there; without one, a
    weakened champion (the next weaker retriever preset of the same parser) so the machinery still runs."""
    champion = assistant_by_alias(client, CHAMPION)
    if champion is None:
        raise LookupError(f"models:/{ASSISTANT_MODEL}@{CHAMPION} does not exist; run the champion gate first")
    control = Candidate.from_key(champion.candidate_key)
    challenger = assistant_by_alias(client, CHALLENGER)
    if challenger is not None and challenger.candidate_key != control.key:
        return Arms(
            control,
            Candidate.from_key(challenger.candidate_key),
            f"@{CHALLENGER} (version {challenger.version})",
        )
    weaker = control.model_copy(update={"retriever": WEAKER_RETRIEVER[control.retriever]})
    return Arms(control, weaker, f"no @{CHALLENGER}: the champion with the {weaker.retriever} retriever")


def offline_run_ids(client: MlflowClient, candidate_keys: Sequence[str]) -> dict[str, str]:
    """The latest offline evaluation run of each candidate per golden set: "<key>/<golden set>" -> run id."""
    found = {}
    for golden_set, name in OFFLINE_EXPERIMENTS.items():
        experiment = client.get_experiment_by_name(name)
        for key in candidate_keys if experiment else ():
            runs = client.search_runs(
                [experiment.experiment_id],
                f"params.candidate = '{key}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if runs:
                found[f"{key}/{golden_set}"] = runs[0].info.run_id
    return found


def assign(user_ids: Sequence[str], salt: str, treatment_share: float = 0.5) -> list[bool]:
    """True for treatment: a salted hash, so a listener's arm is stable and independent across experiments."""
    units = [
        int.from_bytes(hashlib.sha256(f"{salt}:{u}".encode()).digest()[:8], "big") / 2**64 for u in user_ids
    ]
    return [u < treatment_share for u in units]


@dataclass(frozen=True, eq=False)
class OnlineExperiment:
    control: str
    treatment: str
    sessions: pl.DataFrame  # per session: variant, period, metrics, offline ndcg
    plan: dict[str, PowerPlan]  # per metric, from the pre-period only
    results: dict[str, ExperimentResult]  # per metric, fixed horizon at the planned end
    p_holm: dict[str, float]  # the fixed-horizon CUPED p-values, Holm-adjusted across METRICS
    looks: pl.DataFrame  # per look and metric: the always-valid test (LOOK_SCHEMA)


def run_online_experiment(
    population: ListenerPopulation,
    control: SlateServer,
    treatment: SlateServer,
    *,
    pre_sessions: int,
    sessions: int,
    salt: str,
) -> OnlineExperiment:
    users = [listener.user_id for listener in population.listeners]
    treated = assign(users, salt)
    arms = {
        control.variant: [i for i, t in enumerate(treated) if not t],
        treatment.variant: [i for i, t in enumerate(treated) if t],
    }
    pre_run = simulate(population, control, sessions_per_listener=pre_sessions, period="pre")
    pre = session_table(pre_run.events, pre_run.sessions)
    plan = power_plan(pre, len(arms[control.variant]), len(arms[treatment.variant]))
    runs = [
        simulate(population, server, sessions_per_listener=sessions, listeners=arms[server.variant])
        for server in (control, treatment)
    ]
    table = pl.concat([pre, *(session_table(run.events, run.sessions) for run in runs)])
    results = analyze(table, control.variant, treatment.variant)
    return OnlineExperiment(
        control.variant,
        treatment.variant,
        table,
        plan,
        results,
        holm_adjusted({m: _cuped(r).p_value for m, r in results.items()}, ALPHA),
        sequential_looks(table, control.variant, treatment.variant, plan),
    )


def power_plan(pre: pl.DataFrame, n_control: int, n_treatment: int) -> dict[str, PowerPlan]:
    """Each metric's MDE at 80% power for these arm sizes, from the per-listener pre-period values."""
    per_listener = pre.group_by("user_id").agg(pl.col(m).mean() for m in METRICS)
    return {
        m: plan_power(per_listener[m], n_control, n_treatment, metric=m, alpha=ALPHA / len(METRICS))
        for m in METRICS
    }


def _cuped(result: ExperimentResult):
    return result.cuped or result.raw


LOOK_SCHEMA = pl.Schema(
    {
        "look": pl.Int32,  # sessions per listener seen so far
        "metric": pl.String,
        "diff": pl.Float64,  # CUPED treatment - control
        "se": pl.Float64,
        "p_always_valid": pl.Float64,
        "p_holm": pl.Float64,  # Holm across METRICS at this look
        "cs_low": pl.Float64,  # confidence sequence at ALPHA / len(METRICS): simultaneous over metrics
        "cs_high": pl.Float64,
        "significant": pl.Boolean,  # p_holm <= ALPHA: stopping here would be valid
    }
)


def sequential_looks(
    table: pl.DataFrame, control: str, treatment: str, plan: dict[str, PowerPlan]
) -> pl.DataFrame:
    """The mSPRT after each round of sessions (a listener's s-th session is in round s + 1)."""
    rounds = pl.col("session_id").str.extract(r"-s(\d+)$").cast(pl.Int32) + 1
    table = table.with_columns(round=pl.when(pl.col("period") == "experiment").then(rounds))
    looks = sorted(table["round"].drop_nulls().unique())
    estimates = [
        analyze(table.filter(pl.col("round").is_null() | (pl.col("round") <= r)), control, treatment)
        for r in looks
    ]
    rows: list[dict] = []
    per_metric = {}
    for m in METRICS:
        diff = np.array([_cuped(e[m]).diff for e in estimates])
        se = np.array([_cuped(e[m]).se for e in estimates])
        per_metric[m] = (diff, se, *always_valid(diff, se**2, plan[m].mde, ALPHA / len(METRICS)))
    for i, look in enumerate(looks):
        adjusted = holm_adjusted({m: per_metric[m][2][i] for m in METRICS}, ALPHA)
        for m in METRICS:
            diff, se, p, low, high = per_metric[m]
            rows.append(
                {
                    "look": look,
                    "metric": m,
                    "diff": diff[i],
                    "se": se[i],
                    "p_always_valid": p[i],
                    "p_holm": adjusted[m],
                    "cs_low": low[i],
                    "cs_high": high[i],
                    "significant": adjusted[m] <= ALPHA,
                }
            )
    return pl.DataFrame(rows, schema=LOOK_SCHEMA)


def session_table(events: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Simulator sessions with their online proxies from the log (a session with no event shows zeros)."""
    online = session_metrics(events).drop("user_id", "variant", "turns")
    return sessions.join(online, on="session_id", how="left", maintain_order="left").with_columns(
        pl.col(c).fill_null(0) for c in online.columns if c != "session_id"
    )


def analyze(table: pl.DataFrame, control: str, treatment: str) -> dict[str, ExperimentResult]:
    """Each metric per listener, CUPED-adjusted by the listener's pre-period value of the same metric."""
    pre = (
        table.filter(pl.col("period") == "pre")
        .group_by("user_id")
        .agg(pl.col(m).mean().alias(f"pre_{m}") for m in METRICS)
    )
    # Row order fixed: the per-listener sums, and so the logged figures, are then the same on every rerun.
    experiment = table.filter(pl.col("period") == "experiment").join(
        pre, on="user_id", how="left", maintain_order="left"
    )
    return {
        metric: analyze_experiment_frame(
            experiment,
            unit="user_id",
            metric=metric,
            covariate=f"pre_{metric}",
            control=control,
            treatment=treatment,
        )
        for metric in METRICS
    }


@dataclass(frozen=True)
class Correlation:
    level: str  # what one point is: "session" or "variant"
    offline: str
    online: str
    spearman: float
    ci_low: float
    ci_high: float
    n: int
    n_clusters: int

    def to_metrics(self, prefix: str = "offline_online") -> dict[str, float]:
        return {
            f"{prefix}.spearman": self.spearman,
            f"{prefix}.ci_low": self.ci_low,
            f"{prefix}.ci_high": self.ci_high,
        }


def offline_online_correlation(
    sessions: pl.DataFrame,
    offline: str = "ndcg",
    online: str = "like_rate",
    cluster: str = "user_id",
    n_resamples: int = 2000,
    seed: int = 0,
) -> Correlation:
    """Spearman correlation across sessions, with a percentile bootstrap over listeners (a listener's
    sessions share their taste, so resampling sessions would make the interval too narrow)."""
    x, y = sessions[offline].to_numpy().astype(float), sessions[online].to_numpy().astype(float)
    codes = np.unique(sessions[cluster].to_numpy(), return_inverse=True)[1].ravel()
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        idx = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        draws.append(stats.spearmanr(x[idx], y[idx]).statistic)
    low, high = np.nanquantile(draws, [0.025, 0.975])
    return Correlation(
        "session",
        offline,
        online,
        float(stats.spearmanr(x, y).statistic),
        float(low),
        float(high),
        len(x),
        len(members),
    )


def log_online_experiment(
    client: MlflowClient,
    experiment_id: str,
    result: OnlineExperiment,
    params: dict[str, str],
    correlation: Correlation,
    offline_runs: dict[str, str],
    lock: AbstractContextManager,
) -> str:
    """One run: both candidate keys as params, every metric's raw and CUPED effect, links to offline runs.

    Fingerprinted by the arms, the parameters and the simulated sessions: an unchanged rerun reuses it."""
    arm_of = {result.control: "control", result.treatment: "treatment"}
    tags = {
        f"setlist.offline_run.{arm_of[ref.split('/')[0]]}.{ref.split('/')[1]}": run_id
        for ref, run_id in offline_runs.items()
        if ref.split("/")[0] in arm_of
    }
    params = {"control_candidate": result.control, "treatment_candidate": result.treatment, **params}
    summary = json.dumps({m: r.to_dict() for m, r in result.results.items()}, default=str, indent=2)
    metrics = correlation.to_metrics()
    for metric, analysis in result.results.items():
        metrics |= analysis.to_metrics(prefix=metric) | result.plan[metric].to_metrics(metric)
        metrics[f"{metric}.p_holm"] = result.p_holm[metric]

    def log(run_id: str) -> None:
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for key, value in metrics.items():
            if np.isfinite(value):
                client.log_metric(run_id, key, float(value))
        client.log_text(run_id, summary, "results.json")
        log_per_item_table(client, run_id, result.sessions, "sessions.json")
        client.log_text(run_id, result.looks.write_csv(), "sequential_looks.csv")

    # What was simulated, not the analysis of it: the analysis is a function of the sessions, and its floats
    # (the power plan's MDE) vary in the last bit between identical reruns with numpy's summation order.
    run_fingerprint = fingerprint(
        EXPERIMENT,
        json.dumps(params, sort_keys=True),
        json.dumps(tags, sort_keys=True),
        table_hash(result.sessions),
    )
    return log_run_once(
        client,
        experiment_id,
        run_name=f"{result.control} vs {result.treatment}",
        fingerprint=run_fingerprint,
        lock=lock,
        log=log,
        tags=tags,
    ).run_id
