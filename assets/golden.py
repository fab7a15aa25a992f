"""Golden sets: the expert-curated conversations with reviewer ratings, and CPCD with real user judgements.

Each output carries its set's content hash as its data version, so a changed golden file makes
everything downstream of it stale.
"""

import warnings
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ui_metadata import counts_table, preview, suite_result
from checks.catalog_suite import validate_catalog
from checks.golden_suite import validate_cpcd_turns, validate_curated_turns, validate_ratings
from models.catalog.sources import CatalogSourceError
from models.file_versions import file_version, files_version
from models.golden.cpcd import import_cpcd
from models.golden.curated import CURATED_DIR, load_curated_set
from models.taxonomy import load_curated
from orchestration.resources import PlatformConfig

GROUP = "golden"
CPCD_PATH_VARIABLE = "SETLIST_GOLDEN_CPCD_PATH"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # observable source assets are beta in Dagster 1.13

    @dg.multi_observable_source_asset(
        specs=[
            dg.AssetSpec(
                "golden_curated_files",
                group_name=GROUP,
                description=f"The reviewed golden files ({CURATED_DIR}/*.yaml), versioned by their names and content.",
            )
        ]
    )
    def golden_curated_files() -> dg.ObserveResult:
        paths = sorted(CURATED_DIR.glob("*.yaml"))
        return dg.ObserveResult(
            data_version=dg.DataVersion(files_version(paths)),
            metadata={"folder": dg.MetadataValue.path(str(CURATED_DIR)), "files": len(paths)},
        )

    @dg.multi_observable_source_asset(
        specs=[
            dg.AssetSpec(
                "golden_cpcd_file",
                group_name=GROUP,
                description=f"The CPCD golden file ({CPCD_PATH_VARIABLE}), versioned by its content.",
            )
        ]
    )
    def golden_cpcd_file(platform: PlatformConfig) -> dg.ObserveResult:
        try:
            version = file_version(platform.golden_cpcd_path)
        except OSError as err:
            raise _cpcd_unreadable(platform.golden_cpcd_path, err) from err
        return dg.ObserveResult(
            data_version=dg.DataVersion(version),
            metadata={"file": dg.MetadataValue.path(platform.golden_cpcd_path)},
        )


def _cpcd_unreadable(path: str, err: Exception) -> dg.Failure:
    return dg.Failure(
        f"cannot read the CPCD golden set at {path!r} ({err}); "
        f"set {CPCD_PATH_VARIABLE} to a cpcd_v1.dialogs.*.jsonl file"
    )


@dg.multi_asset(
    group_name=GROUP,
    deps=[golden_curated_files],
    outs={
        "golden_curated": dg.AssetOut(
            kinds={"polars"},
            description=(
                "Expert-curated conversations (data/golden/curated/*.yaml), one row per turn: labels, the "
                "derived constraint and what expected tracks must and must not carry. Versioned by content hash."
            ),
        ),
        "golden_ratings": dg.AssetOut(
            kinds={"polars"},
            description="Team reviewers' 1-5 ratings of sample responses to curated turns, for judge calibration.",
        ),
    },
)
def golden_curated_assets(platform: PlatformConfig):
    curated = load_curated_set(load_curated(Path(platform.taxonomy_file)))
    turns, ratings, version = curated.turns, curated.ratings, curated.content_hash
    intents = dict(turns.group_by("intent").len().sort("intent").iter_rows())
    yield dg.Output(
        turns,
        output_name="golden_curated",
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": turns.height,
            "version": version,
            "conversations": turns["conversation_id"].n_unique(),
            "turns": turns.height,
            "files": len(curated.files),
            "turns_per_intent": counts_table(intents, "intent", "turns"),
            "preview": preview(
                turns.select("conversation_id", "turn_index", "text", "intent", "slots", "must_not")
            ),
        },
    )
    scores = dict(ratings.group_by("rating").len().sort("rating").iter_rows())
    yield dg.Output(
        ratings,
        output_name="golden_ratings",
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": ratings.height,
            "version": version,
            "rated_turns": ratings.select("conversation_id", "turn_index").n_unique(),
            "acceptable_share": round(ratings["acceptable"].mean() or 0.0, 3),
            "raters": ", ".join(sorted(ratings["rater"].unique())),
            "ratings": counts_table(scores, "rating", "responses"),
            "preview": preview(
                ratings.select("conversation_id", "turn_index", "response", "rating", "acceptable")
            ),
        },
    )


@dg.multi_asset(
    group_name=GROUP,
    deps=[golden_cpcd_file],
    outs={
        "golden_cpcd": dg.AssetOut(
            kinds={"polars"},
            description=(
                "CPCD conversations, one row per turn with the tracks the user liked and disliked: real human "
                f"judgements for retrieval evaluation. File location: {CPCD_PATH_VARIABLE}."
            ),
        ),
        "cpcd_corpus": dg.AssetOut(
            kinds={"polars"},
            description="The tracks rated in CPCD, in the catalog schema: the corpus golden_cpcd is ranked against.",
        ),
    },
)
def golden_cpcd_assets(platform: PlatformConfig):
    try:
        golden = import_cpcd(platform.golden_cpcd_path)
    except CatalogSourceError as err:
        raise _cpcd_unreadable(platform.golden_cpcd_path, err) from err
    turns, corpus, version = golden.turns, golden.corpus, golden.content_hash[:16]
    source = {"source_file": dg.MetadataValue.path(golden.source_file), "version": version}
    yield dg.Output(
        turns,
        output_name="golden_cpcd",
        data_version=dg.DataVersion(version),
        metadata={
            **source,
            "dagster/row_count": turns.height,
            "conversations": golden.n_conversations,
            "turns": turns.height,
            "turns_with_likes": turns.filter(pl.col("liked").list.len() > 0).height,
            "liked": int(turns["liked"].list.len().sum()),
            "disliked": int(turns["disliked"].list.len().sum()),
            "conversations_rejected": golden.rejects.height,
            "preview": preview(
                turns.select("conversation_id", "turn_index", "user_query", "liked", "disliked")
            ),
        },
    )
    yield dg.Output(
        corpus,
        output_name="cpcd_corpus",
        data_version=dg.DataVersion(version),
        metadata={
            **source,
            "dagster/row_count": corpus.height,
            "tracks_quarantined": golden.corpus_quarantined.height,
            "preview": preview(corpus),
        },
    )


@dg.asset_check(
    asset="golden_curated",
    blocking=True,
    additional_ins={"taxonomy": dg.AssetIn()},
    description="Schema, unique (conversation, turn), every intent valid and covered, every node in the taxonomy.",
)
def golden_curated_expectations(golden_curated: pl.DataFrame, taxonomy: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = validate_curated_turns(golden_curated, set(taxonomy["node_id"]))
    return suite_result(outcome)


@dg.asset_check(
    asset="golden_ratings",
    blocking=True,
    additional_ins={"golden_curated": dg.AssetIn(), "taxonomy": dg.AssetIn()},
    description="Ratings within the rubric scale, about existing golden turns, shown tracks in taxonomy terms.",
)
def golden_ratings_expectations(
    golden_ratings: pl.DataFrame, golden_curated: pl.DataFrame, taxonomy: pl.DataFrame
) -> dg.AssetCheckResult:
    outcome = validate_ratings(golden_ratings, golden_curated, set(taxonomy["node_id"]))
    return suite_result(outcome)


@dg.asset_check(
    asset="golden_cpcd",
    blocking=True,
    additional_ins={"cpcd_corpus": dg.AssetIn()},
    description="Schema, unique (conversation, turn), every liked or disliked track in the corpus.",
)
def golden_cpcd_expectations(golden_cpcd: pl.DataFrame, cpcd_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = validate_cpcd_turns(golden_cpcd, set(cpcd_corpus["track_id"]))
    return suite_result(outcome)


@dg.asset_check(asset="cpcd_corpus", blocking=True, description="The catalog suite over the CPCD corpus.")
def cpcd_corpus_expectations(cpcd_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    outcome = validate_catalog(cpcd_corpus)
    return suite_result(outcome)
