"""Preference tuning (DPO) on judged pairs, top to bottom: arguments -> data -> model -> trainer -> train -> save -> metrics.

    python -m lib.train.dpo --recipe dpo_embedded --pairs runs/dev/prefer/pairs.jsonl \
        --model runs/dev/model --output-dir runs/dev/model_dpo --run-dir runs/dev

TRL's `DPOTrainer` does the optimisation (the DPO loss is TRL's, not a copy); this module
decides what it trains on and what it costs:

* Pairs come from `lib/evaluate/pairs.py` (`pairs.jsonl`: prompt messages, chosen, rejected).
  A fixed, hash-chosen slice is held out (`lib.train.data.split_heldout`), and the held-out
  preference accuracy and reward margin are measured before the first step and every
  `eval_steps` (metrics.json `heldout_curve`).
* Tokens: each pair is encoded by `lib.core.masking.encode_preference`, so the prompt ids
  are exactly those inference sends (`prompt_ids`) and each answer ends in EOS; TRL's own
  tokenization (which re-renders the prompt and may split it elsewhere) is bypassed.
* The reference is the frozen starting model (the SFT model). Its log-probs are computed
  once before training when the recipe says so (`dpo.precompute_ref_log_probs`, TRL's
  precompute): one reference forward per pair instead of one per pair per epoch, and no
  second model in memory while training. LoRA recipes use the adapter-free base as reference.
* Compute goes to the ledger under the budget phase "preference", and the run stops before
  the next step would cross its cap (`lib.train.metering`, the same callback SFT uses).
* Several processes (torchrun, `lib.train.cluster.train_on_cluster` on a sky node): each rank
  meters its own node, the recipe's FSDP shards the policy (gloo on CPU in the rehearsal), and
  rank 0 publishes the model and writes the metrics. DPO saves no intermediate checkpoint: a
  preempted run starts DPO again (the pairs, the paid-for part, are kept append-only), which the
  launch plan prices as half the run lost per expected preemption (lib/launch/overheads.py).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import UserError, cli
from lib.core.files import atomic_write_json, read_jsonl
from lib.core.masking import MaskingError, MaskingReport, encode_preference
from lib.core.params import parse_settings
from lib.train.data import split_heldout
from lib.train.dist import barrier, procs_per_node, rank_and_world
from lib.train.fsdp import enable_fsdp_on_cpu, sharding_arguments
from lib.train.metering import budget_callback, open_budget
from lib.train.model import load_tokenizer_and_model, make_trainable
from lib.train.publish import publish_model
from lib.train.recipes import DPO_HELDOUT_FRACTION, load_recipe

PHASE = "preference"


@dataclass
class DpoSettings:
    recipe: str = "dpo_embedded"  # a recipe with a dpo section, in lib/recipes/ or a .yaml path
    pairs: str = ""  # pairs.jsonl (lib/evaluate/pairs.py)
    heldout_fraction: float = DPO_HELDOUT_FRACTION  # pairs held out for accuracy and margin (hash-chosen, fixed)
    model: str = ""  # the SFT model to start from and to keep as reference ("" = the recipe's base)
    output_dir: str = ""  # the tuned model (written atomically, with .complete)
    metrics_path: str = ""  # "" = <output_dir>/../prefer/dpo_metrics.json
    max_steps: int = 0  # 0 = the recipe's epochs
    num_train_epochs: float = 0.0  # 0 = recipe
    learning_rate: float = 0.0  # 0 = recipe
    beta: float = 0.0  # 0 = recipe
    per_device_batch: int = 0  # pairs per device per micro-batch; 0 = recipe
    grad_accum: int = 0  # 0 = recipe
    max_length: int = 0  # prompt + answer tokens; 0 = recipe
    eval_steps: int = 0  # held-out evaluation every this many steps; 0 = 4 per run
    seed: int = 42
    run_dir: str = ""  # when set: compute goes to <run_dir>/ledger, capped by budgets.yaml's preference phase
    budgets_path: str = ""
    hourly_usd: float = -1.0  # per node; -1 = $0 on CPU, the catalog price on GPUs
    lora: bool | None = None  # None = the recipe's adapters, if any; False = full fine-tune instead


def train_dpo(cfg: DpoSettings) -> dict:
    """DPO as `cfg` says; returns (and writes) the metrics."""
    import torch
    from transformers import PrinterCallback, set_seed

    # ------------------------------------------------------------------------ arguments
    rank, world = rank_and_world()
    main, on_gpu = rank == 0, torch.cuda.is_available()
    recipe = load_recipe(cfg.recipe)
    out_dir, metrics_path = check_settings(cfg, recipe)
    max_length = cfg.max_length or recipe.max_length
    use_lora = recipe.lora is not None and cfg.lora is not False
    use_fsdp = world > 1 and recipe.fsdp
    t_start = time.time()
    budget = open_budget(cfg.run_dir, cfg.budgets_path, rank=rank, world=world, phase=PHASE)  # a bad budgets.yaml fails first
    set_seed(cfg.seed)

    # ------------------------------------------------------------------------ data
    records = read_jsonl(cfg.pairs, what="preference pairs", fix="build them first (lib/evaluate/pairs.py)")
    train_recs, held_recs = split_heldout(records, cfg.heldout_fraction, minimum=2, seed=cfg.seed)

    # ------------------------------------------------------------------------ model
    tok, model, model_src = load_tokenizer_and_model(recipe, cfg.model, cfg.seed, on_gpu=on_gpu)
    train_ex, report = encode_pairs(train_recs, tok, recipe.format, max_length)
    held_ex, held_report = encode_pairs(held_recs, tok, recipe.format, max_length)
    if not train_ex:
        raise UserError(f"no trainable pairs ({report.summary()}): build more pairs or raise max_length")
    model = make_trainable(model, recipe, lora=use_lora, gradient_checkpointing=recipe.gradient_checkpointing and on_gpu)

    # ------------------------------------------------------------------------ trainer
    per_device = cfg.per_device_batch or recipe.hardware.per_device_batch
    accum = cfg.grad_accum or recipe.hardware.grad_accum
    epochs = cfg.num_train_epochs or recipe.num_train_epochs
    total_steps = cfg.max_steps or math.ceil(math.ceil(len(train_ex) / (per_device * accum * world)) * epochs)
    args = dpo_arguments(cfg, recipe, model, out_dir.with_name(out_dir.name + ".checkpoints"), per_device=per_device,
                         accum=accum, epochs=epochs, max_length=max_length, total_steps=total_steps,
                         on_gpu=on_gpu, heldout=bool(held_ex), fsdp=use_fsdp, world=world)
    budget_cb = budget_callback(budget, recipe.hardware, hourly_usd=cfg.hourly_usd, on_gpu=on_gpu,
                                max_steps=total_steps, purpose="dpo", main=main, run_dir=cfg.run_dir) if budget else None
    if use_fsdp and not on_gpu:
        enable_fsdp_on_cpu(args)  # accelerate has no switch for FSDP on CPU (lib/train/fsdp.py)
    trainer = pretokenized_trainer()(model=model, args=args, train_dataset=dataset(train_ex),
                                     eval_dataset=dataset(held_ex) if held_ex else None, processing_class=tok,
                                     callbacks=[budget_cb] if budget_cb else [])
    trainer.remove_callback(PrinterCallback)  # its per-step dicts would flood the notebook; the curves are in metrics

    # ------------------------------------------------------------------------ train
    trainer.train()

    # ------------------------------------------------------------------------ save
    publish_model(trainer, tok, out_dir, recipe=recipe, model_src=model_src, seed=cfg.seed, lora=use_lora,
                  finished=None, main=main)
    if budget_cb is not None:
        budget_cb.close(trainer.state)

    # ------------------------------------------------------------------------ metrics
    result = run_metrics(recipe, trainer, args, model_src=model_src, use_lora=use_lora, use_fsdp=use_fsdp,
                         world=world, epochs=epochs, per_device=per_device, accum=accum, max_length=max_length,
                         n_pairs=len(records), train_ex=train_ex, held_ex=held_ex, reports=(report, held_report),
                         budget=budget, budget_cb=budget_cb, seconds=time.time() - t_start,
                         out_dir=out_dir) if main else {}
    if main:
        atomic_write_json(metrics_path, result)
    barrier()
    return result


def run_metrics(recipe, trainer, args, *, model_src: str, use_lora: bool, use_fsdp: bool, world: int,
                epochs: float, per_device: int, accum: int, max_length: int, n_pairs: int, train_ex: list,
                held_ex: list, reports: tuple, budget, budget_cb, seconds: float, out_dir: Path) -> dict:
    """dpo_metrics.json: what trained, on what, the curves, the tokens and the spend (rank 0)."""
    report, held_report = reports
    step_pairs = per_device * accum * world
    return {
        "recipe": recipe.name, "model": model_src, "format": recipe.format, "lora": use_lora, "beta": args.beta,
        "learning_rate": args.learning_rate, "epochs": epochs, "optimizer_steps": trainer.state.global_step,
        "per_device_batch": per_device, "grad_accum": accum, "max_length": max_length,
        "precompute_ref_log_probs": args.precompute_ref_log_probs, "world_size": world,
        "nodes": world // procs_per_node(), "procs_per_node": procs_per_node(), "fsdp": use_fsdp,
        "pairs": n_pairs, "train_pairs": len(train_ex), "heldout_pairs": len(held_ex),
        "masking": report.as_dict(), "heldout_masking": held_report.as_dict(), **curves(trainer.state.log_history),
        "trained_tokens": trained_tokens(train_ex, trainer.state.epoch or 0, trainer.state.global_step, step_pairs),
        "stopped_for_budget": bool(budget_cb and budget_cb.stopped_for_budget),
        **({"preference_usd_spent": budget.ledger.spent(PHASE)} if budget else {}),
        "seconds": seconds, "output_dir": str(out_dir)}


# ---------------------------------------------------------------------------- arguments


def check_settings(cfg: DpoSettings, recipe) -> tuple[Path, Path]:
    """What train_dpo needs beyond the recipe, checked before any work; returns where it writes."""
    if recipe.dpo is None:
        raise UserError(f"recipe {recipe.name} has no dpo section: use dpo_embedded, dpo_7b or dpo_lora")
    if not cfg.pairs:
        raise UserError("no preference pairs: pass --pairs path/to/pairs.jsonl (lib/evaluate/pairs.py)")
    if not cfg.output_dir:
        raise UserError("no output directory: pass --output-dir where the tuned model goes")
    if cfg.lora and recipe.lora is None:
        raise UserError(f"recipe {recipe.name} has no lora section: leave lora unset, or use dpo_lora")
    if cfg.beta < 0:
        raise UserError(f"beta={cfg.beta} must be positive (0 = the recipe's {recipe.dpo.beta})")
    out_dir = Path(cfg.output_dir).resolve()
    return out_dir, Path(cfg.metrics_path or out_dir.parent / "prefer" / "dpo_metrics.json").resolve()


# ---------------------------------------------------------------------------- data


def encode_pairs(records: list[dict], tok, fmt: str, max_length: int) -> tuple[list[dict], MaskingReport]:
    """Every pair as prompt/chosen/rejected ids (`encode_preference`); a pair that cannot be
    encoded honestly is dropped and counted, as SFT's masking does."""
    report, out = MaskingReport(), []
    for i, rec in enumerate(records):
        report.total += 1
        try:
            ex, truncated = encode_preference(fmt, rec["prompt"], rec["chosen"], rec["rejected"], tok, max_length)
        except MaskingError as e:
            report.drop(rec.get("id", i), str(e))
            continue
        except KeyError as e:
            raise UserError(f"pair {rec.get('id', i)} has no {e} field: use pairs.jsonl from lib/evaluate/pairs.py") from None
        report.kept += 1
        report.truncated += truncated
        report.tokens += len(ex["prompt_ids"]) * 2 + len(ex["chosen_ids"]) + len(ex["rejected_ids"])
        report.label_tokens += len(ex["chosen_ids"]) + len(ex["rejected_ids"])
        out.append(ex)
    return out, report


def dataset(examples: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(examples)


# ---------------------------------------------------------------------------- trainer


def pretokenized_trainer():
    """TRL's DPOTrainer taking the pairs as already tokenized (prompt_ids, chosen_ids, rejected_ids)."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        # TRL re-tokenizes prompt and prompt+answer itself; ours come from lib.core.masking.
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _precompute_ref_logps(self, dataset, name, batch_size):
            return with_reference_logps(self, dataset, batch_size)

    return PretokenizedDPOTrainer


def with_reference_logps(trainer, dataset, batch_size: int):
    """`dataset` with the frozen reference's log-probs of chosen and rejected as columns, computed once.

    TRL (0.2x) writes them to a cache file beside the dataset's own files and has every rank read
    rank 0's file. Our pairs are an in-memory dataset, whose cache directory is a temporary folder
    of each process: under torchrun the other ranks never found rank 0's file (FileNotFoundError,
    seen 2026-12-07 in the 2-node rehearsal). Every rank already holds all of them after the
    gather, in dataset order (an unshuffled loader sharded by batches), so they stay in memory."""
    import torch
    from torch.utils.data import DataLoader

    acc = trainer.accelerator
    loader = acc.prepare(DataLoader(dataset, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False,
                                    num_workers=0))
    model = trainer.ref_model or trainer.model  # LoRA: the adapters are off inside compute_ref_log_probs
    if next(model.parameters()).device != acc.device:
        # under FSDP Trainer leaves the model where it loaded (CPU) until train() shards it; the batches go to
        # the accelerator's device, so the reference forward goes there too (untested here: no GPU)
        model.to(acc.device)
    chosen, rejected = [], []
    for batch in loader:
        c, r = acc.gather_for_metrics(trainer.compute_ref_log_probs(model, batch))
        chosen.append(c.float().cpu())
        rejected.append(r.float().cpu())
    chosen, rejected = torch.cat(chosen).tolist(), torch.cat(rejected).tolist()
    if len(chosen) != len(dataset):
        raise RuntimeError(f"{len(chosen)} reference log-probs for {len(dataset)} pairs: the gather lost or repeated some")
    return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)


def dpo_arguments(cfg: DpoSettings, recipe, model, output_dir: Path, *, per_device: int, accum: int, epochs: float,
                  max_length: int, total_steps: int, on_gpu: bool, heldout: bool, fsdp: bool = False,
                  world: int = 1):
    """TRL's DPOConfig: the recipe's optimizer and DPO settings, FSDP as SFT shards (lib/train/fsdp.py);
    held-out evaluation before the first step and every eval_steps (about 4 a run)."""
    from trl import DPOConfig

    every = cfg.eval_steps or max(1, total_steps // 4)
    return DPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=per_device, per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=accum, learning_rate=cfg.learning_rate or recipe.learning_rate,
        num_train_epochs=epochs, max_steps=cfg.max_steps or -1, lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps or recipe.warmup_ratio, weight_decay=recipe.weight_decay,
        bf16=bool(recipe.bf16 and on_gpu),
        **sharding_arguments(model, fsdp=fsdp, gradient_checkpointing=recipe.gradient_checkpointing and on_gpu,
                             world=world, on_gpu=on_gpu),
        beta=cfg.beta or recipe.dpo.beta, loss_type=[recipe.dpo.loss_type],
        precompute_ref_log_probs=recipe.dpo.precompute_ref_log_probs, max_length=max_length,
        eval_strategy="steps" if heldout else "no", eval_steps=every, eval_on_start=heldout,
        logging_steps=1, save_strategy="no", seed=cfg.seed, data_seed=cfg.seed, report_to="none",
        use_cpu=not on_gpu, dataloader_num_workers=0, disable_tqdm=True,
    )


# ---------------------------------------------------------------------------- metrics


def curves(log_history: list[dict]) -> dict:
    """Training and held-out curves from Trainer's log: loss, reward margin and preference
    accuracy (the share of pairs whose chosen answer gains more log-probability over the
    reference than the rejected one)."""
    train = [{"step": r["step"], "loss": r["loss"], "margin": r.get("rewards/margins"),
              "accuracy": r.get("rewards/accuracies")} for r in log_history if "loss" in r]
    held = [{"step": r["step"], "loss": r["eval_loss"], "margin": r.get("eval_rewards/margins"),
             "accuracy": r.get("eval_rewards/accuracies")} for r in log_history if "eval_loss" in r]
    return {"train_curve": train, "heldout_curve": held}


def trained_tokens(examples: list[dict], epochs: float, steps: int, pairs_per_step: int) -> int:
    """Tokens through the policy's forward and backward: both sides of every pair seen (prompt
    twice), over the `steps` taken and `epochs` trained (the last batch of an epoch may be short)
    -- the launch plan's count, measured (mean pair length x pairs seen)."""
    per_pair = sum(2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    per_pair /= max(len(examples), 1)
    return int(per_pair * min(steps * pairs_per_step, math.ceil(epochs * len(examples))))


# ---------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> DpoSettings:
    return parse_settings(DpoSettings, argv, __doc__.split("\n")[0])


@cli
def main(argv: list[str] | None = None) -> None:
    res = train_dpo(parse_args(argv))
    if res:  # rank 0's metrics; the other ranks return none
        print(json.dumps({k: res[k] for k in ("optimizer_steps", "heldout_curve", "output_dir")}))


if __name__ == "__main__":
    main()
