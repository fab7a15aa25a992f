"""The offline parser: the registered intent model (classifier + taxonomy gazetteer) behind `TurnParser`.

The model is loaded from the MLflow registry by `models.lifecycle.build`."""

import json
from collections.abc import Sequence

import mlflow.pyfunc
import pandas as pd

from models.assistant.parsing import ParseResult
from models.labels import Intent, Slots, TurnLabels
from models.taxonomy import FACETS, Taxonomy


class OfflineParser:
    """Parses turns with one pyfunc call per batch; slots naming nodes the taxonomy no longer has are dropped
    (the model may predate a taxonomy change), so every result validates against `taxonomy`."""

    def __init__(self, model: mlflow.pyfunc.PyFuncModel, model_version: int, taxonomy: Taxonomy) -> None:
        self.model = model
        self.model_version = model_version
        self.taxonomy = taxonomy

    @property
    def version(self) -> str:
        return f"intent-v{self.model_version}"

    def parse_batch(self, texts: Sequence[str], histories: Sequence[Sequence[str]]) -> list[ParseResult]:
        """Histories are not used: the model classifies each turn from its own text."""
        if len(texts) != len(histories):
            raise ValueError(f"{len(texts)} texts but {len(histories)} histories")
        if not texts:
            return []
        predicted = self.model.predict(pd.DataFrame({"text": list(texts)}))
        return [
            ParseResult(
                labels=TurnLabels(
                    intent=Intent(row.intent), slots=self._known(Slots.model_validate_json(row.slots))
                ),
                confidence=float(row.confidence),
                intent_probabilities=json.loads(row.intent_probabilities),
                parser=self.version,
            )
            for row in predicted.itertuples(index=False)
        ]

    def _known(self, slots: Slots) -> Slots:
        known = self.taxonomy.nodes
        update = {f: [n for n in getattr(slots, f) if n in known] for f in (*FACETS, "excluded")}
        return Slots.model_validate({**slots.model_dump(), **update}, context={"taxonomy": self.taxonomy})
