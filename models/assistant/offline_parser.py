"""The offline parser: the registered intent model (classifier + taxonomy gazetteer) behind `TurnParser`."""

import json
from collections.abc import Sequence

import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

from models.assistant.parsing import ParseResult
from models.candidates import INTENT_MODEL
from models.labels import Intent, Slots, TurnLabels
from models.registry import CHAMPION, model_alias_version
from models.taxonomy import FACETS, Taxonomy


class OfflineParser:
    """Parses turns with one pyfunc call per batch; slots naming nodes the taxonomy no longer has are dropped
    (the model may predate a taxonomy change), so every result validates against `taxonomy`."""

    def __init__(self, model: mlflow.pyfunc.PyFuncModel, model_version: int, taxonomy: Taxonomy) -> None:
        self.model = model
        self.model_version = model_version
        self.taxonomy = taxonomy

    @classmethod
    def from_registry(
        cls, client: MlflowClient, taxonomy: Taxonomy, version: int | None = None, alias: str = CHAMPION
    ) -> "OfflineParser":
        """Load `models:/setlist-intent/<version>`, or the version the alias points at now."""
        if version is None:
            version = model_alias_version(client, INTENT_MODEL, alias)
            if version is None:
                raise LookupError(
                    f"no {INTENT_MODEL} version has alias {alias!r}; materialize intent_model first"
                )
        # load_model resolves models:/ URIs against the global tracking URI, so point it at this client's store.
        mlflow.set_tracking_uri(client.tracking_uri)
        model = mlflow.pyfunc.load_model(f"models:/{INTENT_MODEL}/{version}")
        return cls(model, version, taxonomy)

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
