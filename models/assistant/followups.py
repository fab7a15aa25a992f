"""Relative follow-ups the label schema has no slot for: "faster", "slower", "shorter", "longer".

No catalog here has a tempo field. "Faster" (and "more upbeat", "more energy") maps to the taxonomy's fast
and energetic mood nodes as a soft boost: their words join the query, so tracks tagged with them rank
higher, and nothing is filtered out. "Slower" and "calmer" map to the slow and relaxing nodes the same way.
"Shorter" and "longer" bound the duration by the median length of the tracks shown last, where the catalog
has durations (MTG-Jamendo does, CPCD does not); an explicit bound ("under 3 minutes") is the parser's.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.labels import DurationRange
from models.taxonomy import Taxonomy

FASTER = re.compile(
    r"\b(faster|quicker|speed it up|pick up the pace|more (upbeat|energetic|energy|tempo|uptempo))\b", re.I
)
SLOWER = re.compile(
    r"\b(slower|calmer|slow it down|more (relaxed|relaxing|mellow|chilled|laid back))\b", re.I
)
SHORTER = re.compile(r"\bshorter\b", re.I)
LONGER = re.compile(r"\blonger\b", re.I)
BOOSTS = {"faster": ("mood/fast", "mood/energetic"), "slower": ("mood/slow", "mood/relaxing")}
OPPOSITE = {"faster": "slower", "slower": "faster"}  # "faster" after "calmer" takes the calm boost back


@dataclass(frozen=True)
class FollowUp:
    boost: tuple[str, ...] = ()  # taxonomy nodes to rank higher, never to filter by
    unboost: tuple[str, ...] = ()  # earlier boosts this turn reverses (the opposite cue's nodes)
    duration: DurationRange | None = None  # a bound relative to the last slate
    said: tuple[str, ...] = ()  # the cues recognised: "faster", "shorter", ...
    unmet: tuple[str, ...] = ()  # cues that could not be applied, and why

    def __bool__(self) -> bool:
        return bool(self.said)


def follow_up(text: str, shown_durations: Sequence[float | None], taxonomy: Taxonomy) -> FollowUp:
    said = [name for name, pattern in (("faster", FASTER), ("slower", SLOWER)) if pattern.search(text)]
    boost = [n for cue in said for n in BOOSTS[cue] if n in taxonomy.nodes]
    unboost = [n for cue in said if OPPOSITE[cue] not in said for n in BOOSTS[OPPOSITE[cue]]]
    durations = np.asarray([d for d in shown_durations if d is not None and not np.isnan(d)], dtype=float)
    duration, unmet = None, []
    for cue, pattern in (("shorter", SHORTER), ("longer", LONGER)):
        if not pattern.search(text):
            continue
        said.append(cue)
        if durations.size == 0:
            unmet.append(f"{cue}: the tracks shown have no known length to compare with")
            continue
        median = float(np.floor(np.median(durations)))
        duration = DurationRange(max_s=median) if cue == "shorter" else DurationRange(min_s=median)
    return FollowUp(tuple(dict.fromkeys(boost)), tuple(unboost), duration, tuple(said), tuple(unmet))
