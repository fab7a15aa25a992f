"""Growing the curated golden set: proposals, a review file, reviewer agreement, and accepted conversations.

1. Proposals (`propose`): synthetic conversations whose answers are hard to judge, whole conversations
   because the curated unit is one. Two signals, both over the responses of assistant variants to the
   same synthetic turn (`models.feedback.preferences.synthetic_responses`):
   - judge disagreements: two judges disagree whether one response is acceptable (rating >= 4). It needs
     two judges: the code grader and the LLM response judge when the gateway is configured. Offline there
     is one judge and therefore no disagreement, and the queue says so.
   - near-misses: the code grader rates a response 3 (the rubric's "partly right", where the reviewer
     decides) or the variants land on both sides of acceptable (e.g. with and without the conversation's
     memory): the assistant nearly gets the turn.
2. The review file (`review_file`, `write_review_file`): YAML named by the content hash of its
   proposals. Each proposal holds the turns in the curated schema (labels from the synthetic
   generator, for the reviewer to correct) and an empty `reviews` list. A reviewer appends
   `{reviewer, reviewed_on, decision: accept|reject, intents: [one per turn]}`: `intents` is the
   reviewer's own label per turn, written without looking at the other reviewer's.
3. Acceptance (`accept_review`, `python -m models.feedback.curation accept <review file>`): every
   proposal needs a review; with two reviewers, Cohen's kappa of their decisions and of their intent
   labels is computed and recorded in the curated file. A proposal enters the set when every reviewer
   accepted it and every reviewer's intents equal the file's turns (otherwise it is listed for
   adjudication: edit the turns, align the reviews, accept again). Accepted conversations are appended
   to `data/golden/curated/<theme>.yaml` with the reviewers, the review date and the review file's hash;
   the whole set is validated before the file is kept, and its content hash (the golden version)
   changes, so everything downstream rematerializes.
"""

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.eval.judges import Judge, Verdict, acceptable_from_rating
from models.eval.stats import judge_agreement
from models.feedback.preferences import JudgedTurn
from models.golden.curated import (
    CURATED_DIR,
    ConversationSpec,
    CuratedFile,
    ReviewRecord,
    TurnSpec,
    load_curated_set,
)
from models.labels import Intent, Slots
from models.taxonomy import Taxonomy

Source = Literal["judge_disagreement", "near_miss"]
BORDERLINE_RATING = 3
INSTRUCTIONS = (
    "For each proposal: correct the turns (intent, slots, must, must_not, behaviour) to what an expert "
    "expects, then add your review: {reviewer, reviewed_on, decision: accept|reject, intents: [your intent "
    "for each turn, in order]}. Label the intents without reading another reviewer's. Accept with "
    "`python -m models.feedback.curation accept <this file>`."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Review(_Strict):
    reviewer: str = Field(min_length=1)
    reviewed_on: date
    decision: Literal["accept", "reject"]
    intents: list[Intent] | None = None  # the reviewer's own label of each turn, for agreement
    note: str | None = None


class Proposal(_Strict):
    id: str = Field(min_length=1)
    source: Source
    reason: str
    turns: list[TurnSpec] = Field(min_length=1)
    reviews: list[Review] = []


class ReviewFile(_Strict):
    queue: str  # content hash of the proposals as proposed
    created_on: date
    instructions: str = INSTRUCTIONS
    proposals: list[Proposal]


@dataclass(frozen=True)
class Flag:
    conversation_id: str
    turn_index: int
    source: Source
    detail: str


def flag_turns(
    turns: Sequence[JudgedTurn],
    grader: Judge,
    second_judge: Judge | None = None,
    second_items: int | None = None,
) -> list[Flag]:
    """Judge disagreements (with a second judge) and near-misses of the code grader, per turn.

    The second judge (an LLM: slow on a CPU) rates the responses of the first turns, in order, in one batch
    of at most `second_items` responses (None: all); its disagreements are sought on those only.
    """
    second: dict[tuple[str, int, str], Verdict] = {}
    if second_judge is not None:
        asked: list[tuple[JudgedTurn, str]] = []
        for turn in turns:
            if second_items is not None and len(asked) + len(turn.responses) > second_items:
                break
            asked += [(turn, variant) for variant in sorted(turn.responses)]
        verdicts = second_judge.judge([turn.responses[v] for turn, v in asked]).verdicts
        second = {
            (t.conversation_id, t.turn_index, v): verdict
            for (t, v), verdict in zip(asked, verdicts, strict=True)
        }
    flags = []
    for turn in turns:
        variants = sorted(turn.responses)
        ratings = [v.value for v in grader.judge([turn.responses[v] for v in variants]).verdicts]
        acceptable = [acceptable_from_rating(r) for r in ratings]
        for variant, item_ok in zip(variants, acceptable, strict=True):
            verdict = second.get((turn.conversation_id, turn.turn_index, variant))
            if verdict is not None and verdict.ok and acceptable_from_rating(verdict.value) != item_ok:
                detail = (
                    f"{variant}: {grader.version} says {'' if item_ok else 'not '}acceptable, "
                    f"{second_judge.version} rates it {verdict.value} ({verdict.reason})"
                )
                flags.append(Flag(turn.conversation_id, turn.turn_index, "judge_disagreement", detail))
        summary = ", ".join(f"{v} {r}" for v, r in zip(variants, ratings, strict=True))
        if BORDERLINE_RATING in ratings or len(set(acceptable)) > 1:
            flags.append(
                Flag(
                    turn.conversation_id, turn.turn_index, "near_miss", f"{grader.version} ratings: {summary}"
                )
            )
    return flags


def propose(
    conversations: Mapping[str, Sequence[Mapping[str, object]]],
    flags: Sequence[Flag],
    existing_ids: set[str],
    max_proposals: int,
) -> list[Proposal]:
    """Whole conversations with flagged turns, judge disagreements first, then by flags per conversation.

    `conversations` maps a synthetic conversation id to its turns in order (text, intent, slots JSON).
    """
    by_conversation: dict[str, list[Flag]] = {}
    for f in flags:
        by_conversation.setdefault(f.conversation_id, []).append(f)
    ranked = sorted(
        by_conversation.items(),
        key=lambda item: (
            -sum(f.source == "judge_disagreement" for f in item[1]),
            -len(item[1]),
            _stable(item[0]),
        ),
    )
    proposals = []
    for conversation_id, found in ranked:
        proposal_id = f"curation-{conversation_id}"
        if proposal_id in existing_ids:
            continue
        turns = [
            TurnSpec(
                text=str(t["text"]),
                intent=Intent(t["intent"]),
                slots=Slots.model_validate_json(str(t["slots"])),
            )
            for t in conversations[conversation_id]
        ]
        source: Source = (
            "judge_disagreement" if any(f.source == "judge_disagreement" for f in found) else "near_miss"
        )
        reason = "; ".join(f"turn {f.turn_index}: {f.detail}" for f in found)
        proposals.append(Proposal(id=proposal_id, source=source, reason=reason, turns=turns))
        if len(proposals) == max_proposals:
            break
    return proposals


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def review_file(proposals: Sequence[Proposal], created_on: date) -> ReviewFile:
    canonical = json.dumps([p.model_dump(mode="json") for p in proposals], sort_keys=True)
    queue = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return ReviewFile(queue=queue, created_on=created_on, proposals=list(proposals))


def write_review_file(review: ReviewFile, directory: Path) -> Path:
    """`<directory>/review-<queue hash>.yaml`; the same proposals always give the same file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"review-{review.queue}.yaml"
    document = review.model_dump(mode="json", exclude_defaults=True)  # labels without their empty slots
    document["instructions"] = review.instructions
    for proposal in document["proposals"]:
        proposal.setdefault("reviews", [])
    path.write_text(_dump(document), encoding="utf-8")
    return path


def _dump(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


class ReviewError(ValueError):
    """The review file cannot be accepted; the message names the file, proposal and rule."""


@dataclass(frozen=True)
class Acceptance:
    curated_file: Path
    accepted: list[str]
    rejected: list[str]
    needs_adjudication: dict[str, str]  # proposal id -> why
    agreement: dict[str, float | int] | None  # decision and intent kappa when two reviewers labelled
    golden_version: str  # the curated set's content hash after the change


def accept_review(
    path: Path, taxonomy: Taxonomy, curated_dir: Path = CURATED_DIR, theme: str = "reviewed"
) -> Acceptance:
    """Append the accepted proposals of a review file to `<curated_dir>/<theme>.yaml` (validated)."""
    try:
        review = ReviewFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise ReviewError(f"{path}: unreadable_review_file: {' '.join(str(err).split())}") from err
    unreviewed = [p.id for p in review.proposals if not p.reviews]
    if unreviewed:
        raise ReviewError(f"{path}: proposals {unreviewed} have no review (rule: every_proposal_reviewed)")
    for p in review.proposals:
        for r in p.reviews:
            if r.intents is not None and len(r.intents) != len(p.turns):
                raise ReviewError(
                    f"{path}: proposal {p.id}: {r.reviewer} labelled {len(r.intents)} intents for "
                    f"{len(p.turns)} turns (rule: one_intent_per_turn)"
                )
    accepted, rejected, adjudicate = [], [], {}
    for p in review.proposals:
        decisions = {r.decision for r in p.reviews}
        labels = [tuple(t.intent for t in p.turns)] + [tuple(r.intents) for r in p.reviews if r.intents]
        if decisions == {"reject"}:
            rejected.append(p)
        elif len(decisions) > 1:
            adjudicate[p.id] = "reviewers disagree whether to accept"
        elif len(set(labels)) > 1:
            adjudicate[p.id] = "a reviewer's intents differ from the turns"
        else:
            accepted.append(p)
    agreement = reviewer_agreement(review)
    target = Path(curated_dir) / f"{theme}.yaml"
    previous = target.read_text(encoding="utf-8") if target.exists() else None
    if accepted:
        target.write_text(_merged(previous, accepted, review, agreement), encoding="utf-8")
    try:
        version = load_curated_set(taxonomy, Path(curated_dir)).content_hash
    except ValueError:
        if previous is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(previous, encoding="utf-8")
        raise
    return Acceptance(
        target, [p.id for p in accepted], [p.id for p in rejected], adjudicate, agreement, version
    )


def reviewer_agreement(review: ReviewFile) -> dict[str, float | int] | None:
    """Cohen's kappa between the first two reviewers over what both labelled: decisions and turn intents."""
    reviewers = sorted({r.reviewer for p in review.proposals for r in p.reviews})
    if len(reviewers) < 2:
        return None
    a, b = reviewers[:2]
    decisions: tuple[list[str], list[str]] = ([], [])
    intents: tuple[list[str], list[str]] = ([], [])
    for p in review.proposals:
        by = {r.reviewer: r for r in p.reviews}
        if a in by and b in by:
            decisions[0].append(by[a].decision)
            decisions[1].append(by[b].decision)
            if by[a].intents and by[b].intents:
                intents[0].extend(i.value for i in by[a].intents)
                intents[1].extend(i.value for i in by[b].intents)
    if not decisions[0]:
        return None
    out: dict[str, float | int] = {
        "decision_kappa": round(judge_agreement(*decisions).kappa, 4),
        "decisions_n": len(decisions[0]),
    }
    if intents[0]:
        out |= {"intent_kappa": round(judge_agreement(*intents).kappa, 4), "intents_n": len(intents[0])}
    return out


def _merged(
    previous: str | None,
    accepted: Sequence[Proposal],
    review: ReviewFile,
    agreement: Mapping[str, float | int] | None,
) -> str:
    reviewers = sorted({r.reviewer for p in accepted for r in p.reviews})
    reviewed_on = max(r.reviewed_on for p in accepted for r in p.reviews)
    record = ReviewRecord(review_file=review.queue, reviewers=reviewers, agreement=dict(agreement or {}))
    conversations = [
        ConversationSpec(id=p.id, note=f"{p.source}: {p.reason}", turns=p.turns) for p in accepted
    ]
    if previous is None:
        document = CuratedFile(
            reviewed_by=reviewers, reviewed_on=reviewed_on, reviews=[record], conversations=conversations
        )
    else:
        old = CuratedFile.model_validate(yaml.safe_load(previous))
        document = old.model_copy(
            update={
                "reviewed_by": sorted({*old.reviewed_by, *reviewers}),
                "reviewed_on": max(old.reviewed_on, reviewed_on),
                "reviews": [*old.reviews, record],
                "conversations": [*old.conversations, *conversations],
            }
        )
    header = "# Accepted from review files (models/feedback/curation.py); see data/golden/README.md.\n"
    return header + _dump(document.model_dump(mode="json", exclude_defaults=True))


def main(argv: Sequence[str]) -> int:
    """`python -m models.feedback.curation accept <review file> [--theme NAME]`."""
    from models.taxonomy import load_curated

    if len(argv) < 2 or argv[0] != "accept":
        print(main.__doc__, file=sys.stderr)
        return 2
    theme = argv[argv.index("--theme") + 1] if "--theme" in argv else "reviewed"
    result = accept_review(Path(argv[1]), load_curated(CURATED_DIR.parents[1] / "taxonomy.yaml"), theme=theme)
    print(
        f"{result.curated_file}: accepted {len(result.accepted)}, rejected {len(result.rejected)}, "
        f"to adjudicate {len(result.needs_adjudication)} {result.needs_adjudication or ''}; agreement "
        f"{result.agreement or 'one reviewer: none'}; golden_curated version {result.golden_version}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
