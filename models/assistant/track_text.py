"""What retrieval sees of a track: its catalog tags, and the words BM25 indexes for it.

Tag words are the tag value plus every taxonomy name, alias and synonym of the nodes the tag satisfies
(`Taxonomy.catalog_tags`), so "chill", "drum and bass" or "gym" find MTG-Jamendo tracks tagged
`mood/theme---relaxing`, `genre---drumnbass` or `mood/theme---energetic`.
"""

from functools import cache

import polars as pl

from models.assistant.names import fold_expr
from models.taxonomy import CATALOG_COLUMN, Taxonomy


def track_tags(catalog: pl.DataFrame) -> pl.Series:
    """Each track's distinct catalog tags as "<prefix>---<value>" strings (empty list for untagged tracks)."""
    empty = pl.lit([], dtype=pl.List(pl.String))
    per_facet = [
        pl.col(column).fill_null(empty).list.eval(pl.lit(f"{prefix}---") + pl.element())
        for prefix, column in CATALOG_COLUMN.items()
    ]
    return catalog.select(
        pl.concat_list(per_facet).list.unique(maintain_order=True).alias("tags")
    ).to_series()


def tag_phrases(tags: list[str], taxonomy: Taxonomy | None) -> dict[str, list[str]]:
    """{catalog tag: phrases that ask for it}, the tag value first."""
    phrases = {tag: [tag.split("---", 1)[1]] for tag in tags}
    if taxonomy is None:
        return phrases
    satisfied = cache(taxonomy.catalog_tags)
    for phrase, node_ids in taxonomy.phrase_index().items():
        for tag in set().union(*map(satisfied, node_ids)) & phrases.keys():
            if phrase not in phrases[tag]:
                phrases[tag].append(phrase)
    return phrases


def track_texts(catalog: pl.DataFrame, tags: pl.Series, phrases: dict[str, list[str]]) -> pl.Series:
    """Title, artists, album and tag phrases in one string per track (accents folded), built by polars."""
    tag_words = {tag: " ".join(words) for tag, words in phrases.items()}
    words = tags.list.eval(pl.element().replace_strict(tag_words, default="", return_dtype=pl.String))
    return (
        catalog.with_columns(words.list.join(" ").alias("tag_words"))
        .select(
            pl.concat_str(
                [pl.col("title"), pl.col("artists").list.join(" "), pl.col("album"), pl.col("tag_words")],
                separator=" ",
                ignore_nulls=True,
            )
            .pipe(fold_expr)
            .alias("text")
        )
        .to_series()
    )


def catalog_texts(catalog: pl.DataFrame, taxonomy: Taxonomy | None) -> pl.Series:
    """The text `CatalogIndex.build` indexes for each track (BM25 and the dense embeddings share it)."""
    tags = track_tags(catalog)
    tag_names = tags.explode().drop_nulls().unique().sort().to_list()
    return track_texts(catalog, tags, tag_phrases(tag_names, taxonomy))
