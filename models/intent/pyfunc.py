"""The intent model as an MLflow pyfunc: `text` column in; intent, confidence, slots JSON and intent
probabilities JSON out. Stored as a joblib sklearn pipeline plus the gazetteer as JSON, so the gazetteer
is rebuilt by the code that loads it rather than unpickled from whatever code saved it."""

import json
from pathlib import Path

import joblib
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature, infer_signature

from models.intent.predictor import IntentPredictor
from models.intent.slots import Gazetteer

PIPELINE_ARTIFACT = "pipeline"
GAZETTEER_ARTIFACT = "gazetteer"
INPUT_EXAMPLE = pd.DataFrame(
    {"text": ["some mellow jazz with piano but no vocals", "more like the second one"]}
)


class IntentPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        gazetteer = Gazetteer.from_dict(json.loads(Path(context.artifacts[GAZETTEER_ARTIFACT]).read_text()))
        self.predictor = IntentPredictor(joblib.load(context.artifacts[PIPELINE_ARTIFACT]), gazetteer)

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame) -> pd.DataFrame:
        return predictions_frame(self.predictor, model_input["text"].astype(str).tolist())


def predictions_frame(predictor: IntentPredictor, texts: list[str]) -> pd.DataFrame:
    predictions = predictor.predict(texts)
    return pd.DataFrame(
        {
            "intent": [p.intent.value for p in predictions],
            "confidence": [p.confidence for p in predictions],
            "slots": [p.slots.model_dump_json(exclude_defaults=True) for p in predictions],
            "intent_probabilities": [json.dumps(p.probabilities, sort_keys=True) for p in predictions],
        }
    )


def save_artifacts(predictor: IntentPredictor, directory: Path) -> dict[str, str]:
    """Write the pipeline and the gazetteer; returns the `artifacts` mapping for `log_model`."""
    directory.mkdir(parents=True, exist_ok=True)
    pipeline_path = directory / "pipeline.joblib"
    gazetteer_path = directory / "gazetteer.json"
    joblib.dump(predictor.pipeline, pipeline_path)
    gazetteer_path.write_text(json.dumps(predictor.gazetteer.to_dict(), indent=1))
    return {PIPELINE_ARTIFACT: str(pipeline_path), GAZETTEER_ARTIFACT: str(gazetteer_path)}


def signature_for(predictor: IntentPredictor) -> ModelSignature:
    return infer_signature(INPUT_EXAMPLE, predictions_frame(predictor, INPUT_EXAMPLE["text"].tolist()))
