"""Supervised fine-tuning (phase 03): templates, masking, packing, recipes, FSDP, checkpoints.

Entry points: `lib.train.sft.train(TrainConfig(...))` in-process, `python -m lib.train.sft`
(one worker; read lib/train/sft.py top to bottom), or `lib.train.cluster.train_on_cluster`,
which starts those workers with torchrun on every node.
"""
