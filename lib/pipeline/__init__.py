"""The runner on top: a profile's notebooks in order, locally and on every SkyPilot node.

    python -m lib.pipeline run --profile local

runner.py (run: top to bottom), cloud_rules.py (laptop values a cloud profile may not hold),
preflight.py (checks before anything is written; the shared teacher server), execute.py
(papermill), state.py (run directory, pipeline.json, node files), summary.py (the closing
lines and the budget report), __main__.py (the command line). Profiles themselves are read
by lib/core/profiles.py, which the launcher (lib.launch) reads too.
"""
