"""DPO's compute per token, as a multiple of supervised fine-tuning's: the launch plan's one DPO rule.

SFT costs ~6N FLOPs per trained token (N parameters: forward 2N + backward 4N; Kaplan et al.
2020, the rule lib/data/throughput.yaml's rows assume). A DPO step runs, per pair:

    policy forward + backward on prompt+chosen and on prompt+rejected   6N x (pair tokens)
    reference forward on both sides                                     2N x (pair tokens)

where pair tokens = 2 x prompt + chosen + rejected (the prompt is in both sequences). The
reference forward is paid every epoch while the reference model runs beside the policy; stored
(TRL's precompute_ref_log_probs, recipes' `dpo.precompute_ref_log_probs`) it is paid once,
before the first epoch. So, per pair token of one epoch, in SFT-token equivalents:

    not stored:  (6 + 2) / 6            = 4/3
    stored:      (6 + 2 / epochs) / 6   = 1 + 1 / (3 x epochs)

The plan multiplies the trained pair tokens by this and prices them at the SFT throughput of the
same model and GPUs (tokens/s/GPU, lib/data/throughput.yaml).
"""
from __future__ import annotations

SFT_FLOPS_PER_PARAM_TOKEN = 6.0  # forward 2 + backward 4
FORWARD_FLOPS_PER_PARAM_TOKEN = 2.0


def dpo_flops_multiplier(*, reference_stored: bool, epochs: float = 1.0) -> float:
    """FLOPs per pair token per epoch of DPO, over SFT's per trained token (see the module doc)."""
    if epochs <= 0:
        raise ValueError(f"epochs={epochs} must be > 0")
    reference = FORWARD_FLOPS_PER_PARAM_TOKEN / (epochs if reference_stored else 1.0)
    return (SFT_FLOPS_PER_PARAM_TOKEN + reference) / SFT_FLOPS_PER_PARAM_TOKEN
