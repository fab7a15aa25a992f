"""Tracks liked together: co-occurrence of likes within sessions (CPCD conversations, listening sessions).

"Listeners who liked this also liked that": two tracks co-occur once per session that liked both. Counts are
kept per track, so `neighbours` costs one dictionary lookup per liked track. Built only from sessions that are
never evaluated (for CPCD, the preference-training part), so a conversation's own likes cannot leak into its
ranking.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import polars as pl

MAX_SESSION_LIKES = (
    200  # a session liking more than this is a bulk import, not a taste: its pairs are skipped
)


class CoLikes:
    def __init__(self, neighbours: Mapping[str, Counter[str]], sessions: int) -> None:
        self._neighbours = neighbours
        self.sessions = sessions

    @classmethod
    def from_sessions(cls, likes: pl.DataFrame) -> "CoLikes":
        """`likes` has one row per (session_id, track_id) liked; repeated rows count once."""
        neighbours: dict[str, Counter[str]] = {}
        sessions = likes.unique(["session_id", "track_id"], maintain_order=True).group_by(
            "session_id", maintain_order=True
        )
        count = 0
        for _, group in sessions:
            count += 1
            tracks = group["track_id"].to_list()
            if len(tracks) > MAX_SESSION_LIKES:
                continue
            for track in tracks:
                neighbours.setdefault(track, Counter()).update(t for t in tracks if t != track)
        return cls(neighbours, count)

    def __len__(self) -> int:
        return len(self._neighbours)

    def neighbours(self, liked: Sequence[str], exclude: Iterable[str] = ()) -> Counter[str]:
        """Tracks co-liked with any of `liked`, by the number of sessions they share with them."""
        out: Counter[str] = Counter()
        for track in liked:
            out.update(self._neighbours.get(track, {}))
        for track in [*liked, *exclude]:
            out.pop(track, None)
        return out


def cpcd_sessions(turns: pl.DataFrame) -> pl.DataFrame:
    """CPCD turns (golden_cpcd's schema) as liked-track sessions: one session per conversation."""
    return (
        turns.select(session_id=pl.col("conversation_id"), track_id=pl.col("liked"))
        .explode("track_id")
        .drop_nulls("track_id")
    )
