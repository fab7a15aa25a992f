"""The taxonomy listeners' requests are parsed into: a curated tree merged with what the catalog shows.

The curated file (data/taxonomy.yaml) is the source of truth for names, parents, aliases and
activity implications; the catalog adds tag counts and co-occurrence. Parsers, generators and
evaluation all speak node ids ("genre/techno") and use `Taxonomy.catalog_tags` to turn a node
into the set of catalog tags that satisfy it.
"""

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
import yaml

FACETS = ("genre", "instrument", "mood", "activity", "era")
SYNONYM = "synonym"
# Catalog tag prefix ("mood/theme---calm") and catalog column for each facet that carries tags.
CATALOG_PREFIX = {"genre": "genre", "instrument": "instrument", "mood": "mood/theme"}
CATALOG_COLUMN = {"genre": "genres", "instrument": "instruments", "mood/theme": "moods"}
NODE_FIELDS = {"parent", "aliases", "tags", "implies"}

TAXONOMY_SCHEMA = pl.Schema(
    {
        "node_id": pl.String,
        "facet": pl.String,  # one of FACETS, or "synonym" for a phrase standing for several nodes
        "name": pl.String,
        "parent_id": pl.String,
        "aliases": pl.List(pl.String),
        "tags": pl.List(pl.String),  # catalog tags "<facet>---<value>" this node selects directly
        "implies": pl.List(pl.String),  # activity and synonym rows: the nodes they stand for
        "track_count": pl.Int64,  # tracks carrying one of `tags`
        "subtree_track_count": pl.Int64,  # tracks satisfying the node (descendants and implications too)
        "related": pl.List(pl.String),  # nodes whose tags co-occur most with this one's (by lift)
    }
)


class TaxonomyFileError(ValueError):
    """The curated taxonomy file is malformed; the message names the file and the node."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first_line})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a node written twice is a merge mistake to refuse instead."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports an unhashable key itself
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise _DuplicateKey(key, line, first_line[key])
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def normalize_phrase(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold().strip())


@dataclass(frozen=True)
class Node:
    node_id: str
    facet: str
    name: str
    parent_id: str | None = None
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()


@dataclass
class Taxonomy:
    nodes: dict[str, Node]
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def children(self, node_id: str) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.parent_id == node_id]

    def descendants(self, node_id: str) -> set[str]:
        """The node and everything below it (cycle-safe)."""
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.children(current))
        return seen

    def catalog_tags(self, node_id: str) -> set[str]:
        """Catalog tags that satisfy a node: its own, its descendants', and those of nodes it implies."""
        tags: set[str] = set()
        visited: set[str] = set()
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in visited or current not in self.nodes:
                continue
            visited.add(current)
            for nid in self.descendants(current):
                tags.update(self.nodes[nid].tags)
                stack.extend(self.nodes[nid].implies)
        return tags

    def spoken(self, node_id: str) -> str:
        """The node's name as a listener says it: "deephouse" is an id spelling, its alias "deep house" is not."""
        node = self.nodes.get(node_id)
        if node is None:
            return node_id.split("/", 1)[-1]
        spaced = [a for a in node.aliases if re.sub(r"[\s\-']", "", a) == node.name]
        return spaced[0] if spaced else node.name

    def spoken_value(self, column: str, value: str) -> str:
        """A catalog value ("classicalguitar" in `instruments`) as a listener says it ("classical guitar"):
        the spoken name of the node carrying its tag, else the value."""
        prefix = next(p for p, c in CATALOG_COLUMN.items() if c == column)
        owners = self._tag_owners.get(f"{prefix}---{value}", ())
        named = [n for n in owners if self.nodes[n].name == value]
        return self.spoken((named or list(owners))[0]) if owners else value

    @cached_property
    def _tag_owners(self) -> dict[str, tuple[str, ...]]:
        owners: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for tag in node.tags:
                owners.setdefault(tag, []).append(node.node_id)
        return {tag: tuple(ids) for tag, ids in owners.items()}

    def phrase_index(self) -> dict[str, tuple[str, ...]]:
        """Every phrase a listener may use -> the node ids it stands for."""
        index: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for phrase in (node.name, *node.aliases):
                index.setdefault(normalize_phrase(phrase), []).append(node.node_id)
        for phrase, targets in self.synonyms.items():
            index.setdefault(normalize_phrase(phrase), []).extend(targets)
        return {p: tuple(dict.fromkeys(ids)) for p, ids in index.items()}

    def ambiguous_aliases(self) -> dict[str, tuple[str, ...]]:
        """Names or aliases claimed by more than one node (synonyms are meant to be plural and are not counted)."""
        claims: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for phrase in {normalize_phrase(p) for p in (node.name, *node.aliases)}:
                claims.setdefault(phrase, []).append(node.node_id)
        return {p: tuple(ids) for p, ids in claims.items() if len(ids) > 1}

    def cycles(self) -> list[list[str]]:
        """Parent chains that loop back on themselves."""
        found: list[list[str]] = []
        reported: set[str] = set()
        for start in self.nodes:
            chain: list[str] = []
            current: str | None = start
            while current is not None and current in self.nodes and current not in chain:
                chain.append(current)
                current = self.nodes[current].parent_id
            if current in chain:
                loop = chain[chain.index(current) :]
                if not reported.intersection(loop):
                    found.append(loop)
                    reported.update(loop)
        return found

    def nodes_of(self, facet: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.facet == facet]

    @classmethod
    def from_table(cls, table: pl.DataFrame) -> "Taxonomy":
        nodes: dict[str, Node] = {}
        synonyms: dict[str, tuple[str, ...]] = {}
        for row in table.iter_rows(named=True):
            if row["facet"] == SYNONYM:
                synonyms[row["name"]] = tuple(row["implies"])
                continue
            nodes[row["node_id"]] = Node(
                node_id=row["node_id"],
                facet=row["facet"],
                name=row["name"],
                parent_id=row["parent_id"],
                aliases=tuple(row["aliases"]),
                tags=tuple(row["tags"]),
                implies=tuple(row["implies"]),
            )
        return cls(nodes=nodes, synonyms=synonyms)


def load_curated(path: Path) -> Taxonomy:
    """Read the reviewed taxonomy file, failing with the file and node named on any malformed entry."""
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKey as err:
        raise TaxonomyFileError(f"{path}, {err}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise TaxonomyFileError(f"{path}: cannot read taxonomy file: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("facets"), dict):
        raise TaxonomyFileError(f"{path}: expected a mapping with a 'facets' section")
    unknown_facets = set(raw["facets"]) - set(FACETS)
    if unknown_facets:
        raise TaxonomyFileError(f"{path}: unknown facet(s) {sorted(unknown_facets)}; allowed: {FACETS}")

    nodes: dict[str, Node] = {}
    for facet, entries in raw["facets"].items():
        for name, spec in (entries or {}).items():
            node_id = f"{facet}/{name}"
            spec = spec or {}
            if not isinstance(spec, dict) or set(spec) - NODE_FIELDS:
                raise TaxonomyFileError(
                    f"{path}: node {node_id}: fields must be a mapping of {sorted(NODE_FIELDS)}, got {spec!r}"
                )
            default_tags = [f"{CATALOG_PREFIX[facet]}---{name}"] if facet in CATALOG_PREFIX else []
            nodes[node_id] = Node(
                node_id=node_id,
                facet=facet,
                name=str(name),
                parent_id=f"{facet}/{spec['parent']}" if spec.get("parent") is not None else None,
                aliases=tuple(str(a) for a in spec.get("aliases", [])),
                tags=tuple(spec.get("tags", default_tags)),
                implies=tuple(spec.get("implies", [])),
            )
    synonyms = {str(k): tuple(v) for k, v in (raw.get("synonyms") or {}).items()}

    for node in nodes.values():
        if node.parent_id is not None and node.parent_id not in nodes:
            raise TaxonomyFileError(f"{path}: node {node.node_id}: parent {node.parent_id} is not a node")
        missing = [t for t in node.implies if t not in nodes]
        if missing:
            raise TaxonomyFileError(f"{path}: node {node.node_id}: implies unknown node(s) {missing}")
    for phrase, targets in synonyms.items():
        missing = [t for t in targets if t not in nodes]
        if missing:
            raise TaxonomyFileError(f"{path}: synonym {phrase!r}: unknown node(s) {missing}")
    return Taxonomy(nodes=nodes, synonyms=synonyms)


def catalog_tag_counts(catalog: pl.DataFrame) -> pl.DataFrame:
    """One row per (track, catalog tag) pair, as "<facet>---<value>" strings."""
    parts = [
        catalog.select("track_id", pl.col(column).alias("value"))
        .explode("value")
        .drop_nulls("value")
        .select("track_id", (pl.lit(f"{facet}---") + pl.col("value")).alias("tag"))
        for facet, column in CATALOG_COLUMN.items()
    ]
    return pl.concat(parts).unique()


@dataclass(frozen=True)
class TaxonomyReport:
    unmapped_tags: dict[str, int]  # catalog tag -> tracks carrying it, for tags no node selects
    cycles: list[list[str]]
    ambiguous_aliases: dict[str, tuple[str, ...]]
    catalog_tags: int
    mapped_tags: int
    nodes: int
    nodes_with_tracks: int

    @property
    def tag_coverage(self) -> float:
        return self.mapped_tags / self.catalog_tags if self.catalog_tags else 1.0


def design_taxonomy(curated: Taxonomy, catalog: pl.DataFrame, related_k: int = 5) -> pl.DataFrame:
    """Merge the curated tree with catalog statistics: tag counts, subtree counts, co-occurring nodes."""
    track_tags = catalog_tag_counts(catalog)
    tag_owner = {tag: node.node_id for node in curated.nodes.values() for tag in node.tags}
    related = _related_nodes(track_tags, tag_owner, related_k)
    synonym_ids = {phrase: f"{SYNONYM}/{phrase}" for phrase in curated.synonyms}
    own = _tracks_per_key(track_tags, {n.node_id: n.tags for n in curated.nodes.values()})
    subtree = _tracks_per_key(
        track_tags,
        {
            **{nid: curated.catalog_tags(nid) for nid in curated.nodes},
            **{
                synonym_ids[phrase]: set().union(*(curated.catalog_tags(t) for t in targets))
                for phrase, targets in curated.synonyms.items()
            },
        },
    )

    rows = []
    for node in curated.nodes.values():
        rows.append(
            {
                "node_id": node.node_id,
                "facet": node.facet,
                "name": node.name,
                "parent_id": node.parent_id,
                "aliases": list(node.aliases),
                "tags": list(node.tags),
                "implies": list(node.implies),
                "track_count": own.get(node.node_id, 0),
                "subtree_track_count": subtree.get(node.node_id, 0),
                "related": related.get(node.node_id, []),
            }
        )
    for phrase, targets in curated.synonyms.items():
        rows.append(
            {
                "node_id": synonym_ids[phrase],
                "facet": SYNONYM,
                "name": phrase,
                "parent_id": None,
                "aliases": [],
                "tags": [],
                "implies": list(targets),
                "track_count": 0,
                "subtree_track_count": subtree.get(synonym_ids[phrase], 0),
                "related": [],
            }
        )
    return pl.DataFrame(rows, schema=TAXONOMY_SCHEMA)


def node_track_pairs(taxonomy: Taxonomy, track_tags: pl.DataFrame) -> pl.DataFrame:
    """(`node_id`, `track_id`), unique: the tracks that satisfy each node (`Taxonomy.catalog_tags`)."""
    return (
        _key_tags({nid: taxonomy.catalog_tags(nid) for nid in taxonomy.nodes})
        .join(track_tags, on="tag")
        .select(node_id="key", track_id="track_id")
        .unique()
    )


def assess_taxonomy(taxonomy: Taxonomy, catalog: pl.DataFrame) -> TaxonomyReport:
    """What does not fit: catalog tags no node selects, parent cycles, aliases claimed twice."""
    tag_counts = dict(catalog_tag_counts(catalog).group_by("tag").len().iter_rows())
    owned = {tag for node in taxonomy.nodes.values() for tag in node.tags}
    unmapped = {t: c for t, c in sorted(tag_counts.items()) if t not in owned}
    used_nodes = {nid for nid in taxonomy.nodes if taxonomy.catalog_tags(nid) & tag_counts.keys()}
    return TaxonomyReport(
        unmapped_tags=unmapped,
        cycles=taxonomy.cycles(),
        ambiguous_aliases=taxonomy.ambiguous_aliases(),
        catalog_tags=len(tag_counts),
        mapped_tags=len(tag_counts) - len(unmapped),
        nodes=len(taxonomy.nodes),
        nodes_with_tracks=len(used_nodes),
    )


def _key_tags(key_tags: dict[str, Iterable[str]]) -> pl.DataFrame:
    pairs = [(key, tag) for key, tags in key_tags.items() for tag in tags]
    return pl.DataFrame(pairs, schema={"key": pl.String, "tag": pl.String}, orient="row")


def _tracks_per_key(track_tags: pl.DataFrame, key_tags: dict[str, Iterable[str]]) -> dict[str, int]:
    """Tracks carrying any of each key's tags, for every key in one join (a filter per key is quadratic)."""
    counts = _key_tags(key_tags).join(track_tags, on="tag").group_by("key").agg(pl.col("track_id").n_unique())
    return dict(counts.iter_rows())


def _related_nodes(track_tags: pl.DataFrame, tag_owner: dict[str, str], k: int) -> dict[str, list[str]]:
    """Top-k co-occurring nodes by lift, P(a,b) / (P(a) P(b)), over tracks (pairs seen at least 5 times)."""
    nodes = pl.Series(sorted(set(tag_owner.values())), dtype=pl.String)
    code = {node: j for j, node in enumerate(nodes)}
    # Integer codes (categorical, then dense): ranking millions of id strings took seconds at 1M tracks.
    owned = (
        track_tags.select(
            pl.col("track_id").cast(pl.Categorical).to_physical().alias("track"),
            pl.col("tag")
            .replace_strict({t: code[n] for t, n in tag_owner.items()}, default=None, return_dtype=pl.Int64)
            .alias("node"),
        )
        .drop_nulls("node")
        .unique()
        .with_columns(pl.col("track").rank("dense").cast(pl.Int64) - 1)
    )
    if owned.is_empty():
        return {}
    n_tracks = int(owned["track"].max()) + 1
    # Co-occurrence as a sparse tracks x nodes product: a self-join on track_id grows with tracks x tags^2.
    members = sp.csr_matrix(
        (np.ones(owned.height, dtype=np.int64), (owned["track"].to_numpy(), owned["node"].to_numpy())),
        shape=(n_tracks, nodes.len()),
    )
    co = (members.T @ members).tocoo()
    node_counts = pl.DataFrame({"node": nodes, "n": np.asarray(members.sum(axis=0)).ravel()})
    pairs = (
        pl.DataFrame({"node": nodes.gather(co.row), "node_b": nodes.gather(co.col), "n_ab": co.data})
        .filter((pl.col("node") != pl.col("node_b")) & (pl.col("n_ab") >= 5))
        .join(node_counts, on="node")
        .join(node_counts.rename({"node": "node_b", "n": "n_b"}), on="node_b")
        .with_columns(lift=pl.col("n_ab") * n_tracks / (pl.col("n") * pl.col("n_b")))
        .sort(["node", "lift", "node_b"], descending=[False, True, False])
        .group_by("node", maintain_order=True)
        .head(k)
    )
    return {node: list(group["node_b"]) for (node,), group in pairs.group_by("node", maintain_order=True)}
