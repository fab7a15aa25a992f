"""The offline parser's model: a calibrated TF-IDF intent classifier plus a taxonomy gazetteer for slots.

- `slots.Gazetteer` finds taxonomy phrases (exact, then typo-tolerant), negations, durations, track
  references and artists; `slots.assemble_slots` shapes them into the `Slots` an intent carries.
- `training.train` fits on the train split of `training.split_by_conversation` and evaluates on the rest.
- `tracking.log_and_register` logs the model to MLflow as a pyfunc (`pyfunc.IntentPyfunc`) and registers
  it under `models.lifecycle.candidates.INTENT_MODEL`, once per `training.fingerprint`.
"""
