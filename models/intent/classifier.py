"""The intent classifier: TF-IDF word and character n-grams into a calibrated linear SVM."""

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC


class IntentHyperparameters(BaseModel):
    """Everything that shapes the classifier; part of the model fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)  # char_wb: robust to typos, slang and casing
    min_df: int = 1
    sublinear_tf: bool = True
    c: float = Field(default=0.5, gt=0)  # LinearSVC regularisation: short texts, many sparse features
    class_weight: str | None = "balanced"  # rare intents (clarification, out of scope) count as much
    calibration: str = "sigmoid"  # Platt scaling: stable with a few hundred examples per class
    calibration_folds: int = Field(default=3, ge=2)
    known_word_min_count: int = Field(default=3, ge=1)  # training words this frequent are never typos

    def as_params(self) -> dict[str, str]:
        return {f"hp.{k}": str(v) for k, v in self.model_dump().items()}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def build_pipeline(hp: IntentHyperparameters, seed: int) -> Pipeline:
    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=hp.word_ngrams,
                    min_df=hp.min_df,
                    sublinear_tf=hp.sublinear_tf,
                    token_pattern=r"(?u)\b\w+\b",
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=hp.char_ngrams,
                    min_df=hp.min_df,
                    sublinear_tf=hp.sublinear_tf,
                    lowercase=True,
                ),
            ),
        ]
    )
    svm = LinearSVC(C=hp.c, class_weight=hp.class_weight, random_state=seed)
    calibrated = CalibratedClassifierCV(svm, method=hp.calibration, cv=hp.calibration_folds)
    return Pipeline([("features", features), ("classifier", calibrated)])
