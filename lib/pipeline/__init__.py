"""The runner on top: a profile's notebooks in order, locally and on every SkyPilot node.

    python -m lib.pipeline run --profile local
"""
