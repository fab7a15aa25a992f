"""The candidate lifecycle, in one folder: proposed, built, gated, promoted, served (evaluated by `models/eval/`).

- `candidates.py`: what a candidate is (parser x retriever preset x storyteller, by registry version) and
  which candidates are proposed;
- `registry.py`: prompt and model versions in MLflow, the `setlist-assistant` versions and the aliases;
- `build.py`: a candidate's components resolved through MLflow and assembled into an assistant, for
  evaluation and serving alike (serving resolves `models:/setlist-assistant@<alias>` first);
- `gate_policy.py`: the gate's primary measure and guardrails, named once, and what is gated together
  (the statistics are `models/eval/gate.py`'s);
- `promotion.py`: the aliases the gate's decisions move (`@champion`, `@challenger`).

No Dagster here: `assets/` and `orchestration/` call into it.
"""
