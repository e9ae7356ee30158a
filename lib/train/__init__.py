"""Supervised fine-tuning (phase 03): templates, masking, packing, recipes, FSDP, checkpoints.

Entry points: `lib.train.sft.train(TrainConfig(...))` in-process, or `python -m lib.train.sft`
under torchrun for several processes (see lib/train/sft.py).
"""
