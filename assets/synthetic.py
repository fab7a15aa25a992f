"""Synthetic listener conversations, one partition per generator version, and everything they dropped."""

import collections

import dagster as dg
import polars as pl

from assets.ui_metadata import counts_table, preview, suite_result
from checks.synthetic_suite import validate_synthetic
from models.golden.cpcd import cpcd_evaluation_turns
from models.labels import conversations_to_frame
from models.synthetic import ConversationGenerator
from models.synthetic.grammar import VERSION as GRAMMAR_VERSION
from models.synthetic.grammar import GrammarGenerator
from models.synthetic.llm_generator import LLMGenerator
from models.synthetic.postprocess import postprocess
from models.synthetic.rejects import rejects_to_frame
from models.synthetic.stats import distinct_n, intent_shares, taxonomy_coverage
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource, batch_stats_metadata
from orchestration.partitions import SYNTHETIC_GENERATORS, synthetic_partition_key
from orchestration.resources import PlatformConfig

GROUP = "synthetic"


def _generator(
    key: str, taxonomy: Taxonomy, catalog: pl.DataFrame, llm: LLMGatewayResource
) -> ConversationGenerator:
    name, _, version = key.partition("-")
    generator: ConversationGenerator
    if name == "grammar":
        generator = GrammarGenerator(taxonomy, catalog)
    elif name == "llm":
        if not llm.base_url:
            raise dg.Failure(
                f"partition {key} needs the LLM gateway: set SETLIST_LLM__BASE_URL to an OpenAI-compatible "
                "endpoint (and the key in SETLIST_LLM_API_KEY); the grammar partition runs offline."
            )
        generator = LLMGenerator(taxonomy, catalog, llm.get_gateway())
    else:
        raise dg.Failure(f"partition {key}: unknown generator {name!r}; expected 'grammar-<v>' or 'llm-<v>'")
    if generator.version != version:
        raise dg.Failure(
            f"partition {key} asks for {name} version {version}, but the code is at {generator.version}: "
            f"add partition {synthetic_partition_key(name, generator.version)} instead (old versions stay as they are)."
        )
    return generator


@dg.multi_asset(
    group_name=GROUP,
    partitions_def=SYNTHETIC_GENERATORS,
    outs={
        "synthetic_conversations": dg.AssetOut(
            kinds={"polars", "openai"},
            description=(
                "Label-conditioned listener conversations (one row per turn, labels and constraint as JSON) "
                "from the template grammar or an LLM, after length, language, label-consistency, leakage and "
                "near-duplicate filters. Partition = generator-version."
            ),
        ),
        "synthetic_rejects": dg.AssetOut(
            kinds={"polars"},
            description="Every generated conversation that was dropped, with the stage and reason.",
        ),
    },
    # The check runs in the partition's own step, on the rows it just wrote: a separate unpartitioned
    # check would load every generator partition at once (a dict of tables once there are two).
    check_specs=[
        dg.AssetCheckSpec(
            "synthetic_expectations",
            asset="synthetic_conversations",
            blocking=True,
            description="Schema, every slot a taxonomy node, each intent within 2-40% of turns, no eval leakage.",
        )
    ],
)
def synthetic_assets(
    context: dg.AssetExecutionContext,
    platform: PlatformConfig,
    llm: LLMGatewayResource,
    catalog: pl.DataFrame,
    taxonomy: pl.DataFrame,
    golden_curated: pl.DataFrame,
    golden_cpcd: pl.DataFrame,
):
    tree = Taxonomy.from_table(taxonomy)
    eval_texts = evaluation_texts(golden_curated, golden_cpcd)
    generator = _generator(context.partition_key, tree, catalog, llm)
    # An LLM writes far fewer conversations than the grammar in the same time (GatewayConfig).
    requested = (
        llm.synthetic_conversations
        if isinstance(generator, LLMGenerator)
        else platform.synthetic_conversations
    )
    generation = generator.generate(requested, seed=platform.seed)
    result = postprocess(generation.conversations, tree, eval_texts=eval_texts)
    turns = conversations_to_frame(result.kept)
    rejects = rejects_to_frame([*generation.rejected, *result.rejected])

    reasons = dict(
        collections.Counter(f"{r.stage}: {r.reason}" for r in [*generation.rejected, *result.rejected])
    )
    shares = intent_shares(turns)
    metadata: dict[str, object] = {
        "dagster/row_count": turns.height,
        "conversations": len(result.kept),
        "conversations_requested": requested,
        "conversations_rejected": sum(reasons.values()),
        "seed": platform.seed,
        "generator_version": generator.version,
        "taxonomy_coverage": round(taxonomy_coverage(turns, tree), 4),
        "distinct_1": round(distinct_n(turns["text"].to_list(), 1), 4),
        "distinct_2": round(distinct_n(turns["text"].to_list(), 2), 4),
        "turns_per_intent": counts_table(
            dict(turns.group_by("intent").len().sort("len", descending=True).iter_rows()), "intent", "turns"
        ),
        "intent_shares": counts_table({k: round(v, 3) for k, v in shares.items()}, "intent", "share"),
        "rejection_reasons": counts_table(reasons, "stage: reason", "conversations") if reasons else "none",
        "preview": preview(turns.select("conversation_id", "turn_index", "text", "intent", "slots")),
    }
    if generation.llm_stats is not None:
        metadata.update(batch_stats_metadata(generation.llm_stats))
    yield dg.Output(turns, output_name="synthetic_conversations", metadata=metadata)
    yield dg.Output(
        rejects,
        output_name="synthetic_rejects",
        metadata={
            "dagster/row_count": rejects.height,
            "rejection_reasons": counts_table(reasons, "stage: reason", "conversations")
            if reasons
            else "none",
            "preview": preview(rejects.select("conversation_id", "text", "stage", "reason", "detail")),
        },
    )
    # The rules are those of training data (e.g. every intent 2-40% of turns): they block only the partition
    # the intent model trains on; another one (a 20-conversation LLM sample) is warned about, not failed.
    trains = context.partition_key == (
        platform.intent_training_partition or synthetic_partition_key("grammar", GRAMMAR_VERSION)
    )
    severity = dg.AssetCheckSeverity.ERROR if trains else dg.AssetCheckSeverity.WARN
    checked = suite_result(
        validate_synthetic(turns, taxonomy["node_id"].to_list(), eval_texts=eval_texts), severity
    )
    yield dg.AssetCheckResult(
        asset_key="synthetic_conversations",
        check_name="synthetic_expectations",
        passed=checked.passed,
        severity=checked.severity,
        metadata=checked.metadata,
    )


def evaluation_texts(golden_curated: pl.DataFrame, golden_cpcd: pl.DataFrame) -> list[str]:
    """What training data must not (nearly) repeat: curated turns and the CPCD evaluation part's queries."""
    return [*golden_curated["text"], *cpcd_evaluation_turns(golden_cpcd)["user_query"]]
