"""The cloud layer: launch plans, prices and budget checks for sky/*.yaml, the local
rehearsal of a task (skyrun), and the one module that talks to SkyPilot's SDK.

    python -m lib.launch sky/train_7b.yaml --dry-run
"""
