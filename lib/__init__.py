"""shear: instruction-tuning on a budget. The shared library behind the notebooks."""
