"""Hard constraints on retrieved tracks: required tags (any-of per facet), exclusions, duration bounds.

Tags may be given as catalog tags ("genre---techno") or as bare values under a facet key; the key may
be the catalog column ("genres"), the tag prefix ("genre", "mood/theme") or the taxonomy facet ("mood").
"""

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from models.taxonomy import CATALOG_COLUMN, CATALOG_PREFIX

_PREFIX_OF_KEY = {column: prefix for prefix, column in CATALOG_COLUMN.items()} | {
    **{prefix: prefix for prefix in CATALOG_COLUMN},
    **CATALOG_PREFIX,
}


def catalog_tag(facet_key: str, value: str) -> str:
    """("genres", "techno") -> "genre---techno"; a value that is already a catalog tag must match the facet."""
    prefix = _PREFIX_OF_KEY.get(facet_key)
    if prefix is None:
        raise ValueError(f"unknown facet {facet_key!r}; use one of {sorted(_PREFIX_OF_KEY)}")
    if "---" not in value:
        return f"{prefix}---{value}"
    if value.split("---", 1)[0] != prefix:
        raise ValueError(f"tag {value!r} is not of facet {facet_key!r}")
    return value


def _canonical(groups: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Facet keys -> tag prefixes and values -> catalog tags; two keys for one facet merge."""
    out: dict[str, set[str]] = {}
    for key, values in groups.items():
        out.setdefault(_PREFIX_OF_KEY.get(key, key), set()).update(catalog_tag(key, v) for v in values)
    return {prefix: frozenset(tags) for prefix, tags in out.items()}


class Filters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    require: dict[str, frozenset[str]] = {}  # facet -> tags; a track needs one of them, for every facet
    exclude: dict[str, frozenset[str]] = {}  # facet -> tags a track must not carry
    exclude_artist_ids: frozenset[str] = frozenset()
    exclude_track_ids: frozenset[str] = frozenset()
    # A track without a duration fails any bound: an unknown length cannot be promised to fit.
    min_duration_s: float | None = None
    max_duration_s: float | None = None

    @field_validator("require", "exclude")
    @classmethod
    def _to_catalog_tags(cls, groups: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        return _canonical(groups)

    @model_validator(mode="after")
    def _no_empty_requirement(self) -> "Filters":
        if empty := [facet for facet, tags in self.require.items() if not tags]:
            raise ValueError(f"required facet(s) {empty} list no tags; drop them instead")
        return self
