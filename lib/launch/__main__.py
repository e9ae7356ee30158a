"""The launcher's command line: `python -m lib.launch sky/<task>.yaml [--dry-run]` (lib/launch/estimate.py)."""
from lib.launch.estimate import main

main()
