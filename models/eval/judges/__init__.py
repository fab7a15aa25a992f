"""Judges: code graders and LLM judges behind one interface (`judge(items) -> Judgements`)."""

from models.eval.judges.base import (
    Judge,
    Judgements,
    PairItem,
    RelevanceItem,
    ResponseItem,
    Verdict,
    acceptable_from_rating,
)
from models.eval.judges.lexical import LexicalRelevanceGrader
from models.eval.judges.llm import (
    LLMPairwiseJudge,
    LLMRelevanceJudge,
    LLMResponseJudge,
    PairwiseJudgements,
    data_field,
)
from models.eval.judges.response_rules import ResponseRulesGrader

__all__ = [
    "Judge",
    "Judgements",
    "LLMPairwiseJudge",
    "LLMRelevanceJudge",
    "LLMResponseJudge",
    "LexicalRelevanceGrader",
    "PairItem",
    "PairwiseJudgements",
    "RelevanceItem",
    "ResponseItem",
    "ResponseRulesGrader",
    "Verdict",
    "acceptable_from_rating",
    "data_field",
]
