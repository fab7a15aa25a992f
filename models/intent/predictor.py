"""The offline parser's model: the intent classifier and the slot extractor, predicting together."""

from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.pipeline import Pipeline

from models.intent.slots import Gazetteer, assemble_slots
from models.labels import Intent, Slots


@dataclass(frozen=True)
class Prediction:
    intent: Intent
    confidence: float  # calibrated probability of `intent`
    probabilities: dict[str, float]  # every intent the classifier knows
    slots: Slots


@dataclass
class IntentPredictor:
    pipeline: Pipeline
    gazetteer: Gazetteer

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One classifier call over every text; slots are extracted per text and shaped by its intent."""
        if not texts:
            return []
        probabilities = self.pipeline.predict_proba(list(texts))
        classes = [str(c) for c in self.pipeline.classes_]
        predictions = []
        for text, row in zip(texts, probabilities, strict=True):
            best = int(row.argmax())
            intent = Intent(classes[best])
            predictions.append(
                Prediction(
                    intent=intent,
                    confidence=float(row[best]),
                    probabilities={c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
                    slots=assemble_slots(intent, self.gazetteer.extract(text)),
                )
            )
        return predictions
