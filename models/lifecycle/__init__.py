"""The candidate lifecycle, in one folder: proposed, built, evaluated, gated, promoted, served.

- `candidates.py`: what a candidate is (parser x retriever preset x storyteller, by registry version) and
  which candidates are proposed;
- `registry.py`: prompt and model versions in MLflow, the `setlist-assistant` versions and the aliases;
- `build.py`: a candidate's components resolved through MLflow and assembled into an assistant, for
  evaluation and serving alike.

No Dagster here: `assets/` and `orchestration/` call into it.
"""
