"""Growing the curated golden set: the review queue of proposed conversations (models/feedback/curation.py)."""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.feedback import MEMORYLESS, response_variants
from assets.ui_metadata import counts_table, preview
from models.assistant.retrieval import CatalogIndex
from models.eval.judges import LLMResponseJudge, ResponseRulesGrader
from models.feedback.curation import flag_turns, propose, review_file, write_review_file
from models.feedback.preferences import synthetic_responses
from models.taxonomy import Taxonomy
from orchestration.llm_resource import LLMGatewayResource
from orchestration.resources import PlatformConfig

PROPOSAL_SCHEMA = pl.Schema(
    {"proposal_id": pl.String, "source": pl.String, "turns": pl.Int32, "reason": pl.String}
)


class CurationConfig(dg.Config):
    conversations: int = 60  # synthetic conversations answered by each variant and judged
    max_proposals: int = 20


@dg.asset(
    group_name="golden",
    kinds={"polars", "openai"},
    description=(
        "A review queue for the curated golden set: synthetic conversations where judges disagree (the code "
        "grader vs the LLM response judge, when the gateway is configured) or the assistant nearly gets a "
        "turn (a borderline rating, or variants on both sides of acceptable). Written as a YAML review file "
        "named by its content hash under <SETLIST_HOME>/curation/; reviewers fill it in and "
        "`python -m models.feedback.curation accept <file>` moves accepted conversations into "
        "data/golden/curated/, recording Cohen's kappa when two reviewers labelled."
    ),
)
def curation_queue(
    config: CurationConfig,
    platform: PlatformConfig,
    llm: LLMGatewayResource,
    intent_training_set: pl.DataFrame,
    golden_curated: pl.DataFrame,
    catalog: pl.DataFrame,
    retrieval_index: CatalogIndex,
    taxonomy: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    tree = Taxonomy.from_table(taxonomy)
    judged = synthetic_responses(
        intent_training_set,
        response_variants(retrieval_index, tree),
        catalog,
        tree,
        config.conversations,
        memoryless={MEMORYLESS},
    )
    second = LLMResponseJudge(llm.get_gateway()) if llm.base_url else None
    flags = flag_turns(judged, ResponseRulesGrader(tree), second, second_items=llm.judge_items)
    turns = intent_training_set.sort("conversation_id", "turn_index")
    conversations = {
        cid: group.select("text", "intent", "slots").to_dicts()
        for (cid,), group in turns.filter(
            pl.col("conversation_id").is_in({f.conversation_id for f in flags})
        ).group_by("conversation_id", maintain_order=True)
    }
    proposals = propose(conversations, flags, set(golden_curated["conversation_id"]), config.max_proposals)
    review = review_file(proposals, date.today())
    path = write_review_file(review, Path(platform.exports_dir).parent / "curation")
    table = pl.DataFrame(
        [
            {"proposal_id": p.id, "source": p.source, "turns": len(p.turns), "reason": p.reason}
            for p in proposals
        ],
        schema=PROPOSAL_SCHEMA,
    )
    per_source = {s: sum(f.source == s for f in flags) for s in ("judge_disagreement", "near_miss")}
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "review_file": dg.MetadataValue.path(str(path)),
            "queue_hash": review.queue,
            "judges": f"response_rules + llm_response (the first {llm.judge_items} responses)"
            if second
            else "response_rules only (offline): judge disagreements need the LLM judge",
            "flagged_turns": counts_table(per_source, "source", "turns"),
            "preview": preview(table),
        },
    )
