"""Price a SkyPilot task before it runs, check it against the budget, then launch it.

    python -m lib.launch sky/train_7b.yaml --dry-run          # estimate vs remaining training budget
    python -m lib.launch sky/train_7b.yaml                    # managed spot job (sky jobs launch)
    python -m lib.launch sky/train_7b.yaml --on-demand --run-dir runs/cloud-1 --force

    python -m lib.launch sky/train_7b.yaml --dry-run --run-dir runs/cloud-1   # plan from its data/clean.jsonl

The estimate, all from data:
    training tasks (the task's profile runs 03_train; lib/launch/task_profile.py): the launch
        plan (lib/launch/plan.py) for the recipe that profile names -- data tokens counted from
        clean.jsonl (--data, or --run-dir's data/clean.jsonl; the task's TRAIN_TOKENS env only
        when neither is given, labelled ASSUMED), optimizer steps, and
        hours = tokens x epochs (recipe) / (tokens/s/GPU x GPUs per node x nodes) / 3600
                + overheads, one line each (lib/launch/overheads.py: provisioning -- or the task's
                OVERHEAD_HOURS env --, model download + load, checkpoint writes, held-out loss,
                spot preemptions), every rate measured or cited
        with tokens/s/GPU from lib/data/throughput.yaml (its source printed);
      other tasks: EST_HOURS from the task's envs;
    USD   = hours x hourly price of one node (SkyPilot's catalog, cheapest matching instance)
            x nodes + EST_API_USD (teacher / judge calls the task makes).
The remaining budget is the phase's cap (budgets.yaml, phase = the task's BUDGET_PHASE env)
minus what the run's ledger (--run-dir) already spent. A launch whose estimate exceeds the
remaining budget is refused unless --force. With --run-dir the plan is saved as
<run_dir>/plan/<task>.json, and the budget report sets it beside what the run measured.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lib.budget import Ledger, load_budgets
from lib.budget.gpu import catalog_file, gpu_hourly_usd, gpu_price
from lib.core.errors import BudgetExceeded, UserError, cli
from lib.core.paths import BUDGETS_YAML, REPO
from lib.launch import sky_backend
from lib.launch.calibrate import calibrate, calibrated_line
from lib.launch.overheads import Overhead
from lib.launch.plan import describe_plan, find_data, make_plan, save_plan
from lib.launch.skyrun import env_flags
from lib.launch.task_profile import TaskProfile, task_profile


@dataclass
class Estimate:
    phase: str
    hours: float
    compute_usd: float
    api_usd: float
    hourly_usd: float  # one node
    nodes: int
    gpus_per_node: int
    accelerator: str
    instance: str
    spot: bool
    price_source: str
    basis: str  # how the hours were derived
    plan: Any = None  # lib.launch.plan.Plan for training tasks
    hours_interval: dict = field(default_factory=dict)  # low / expected / high
    hourly_interval: dict = field(default_factory=dict)  # one node: cheapest spot / chosen / on-demand
    usd_interval: dict = field(default_factory=dict)  # low hours x low price ... high hours x high price (+ API)
    placements: list = field(default_factory=list)  # (usd, usd/h, hours, option) of every placement, cheapest first
    clouds: str = ""  # which clouds were priced, and why

    @property
    def usd(self) -> float:
        return self.compute_usd + self.api_usd


def load_task(path: str | os.PathLike, env: dict[str, str] | None = None):
    """`sky.Task.from_yaml` with one-line errors; `env` overrides the task's envs like `--env`."""
    import sky

    path = Path(path)
    if not path.is_file():
        raise UserError(f"task YAML {path} not found: pass one of {', '.join(sorted(p.name for p in Path('sky').glob('*.yaml')))}")
    try:
        config = yaml.safe_load(path.read_text())
        return sky.Task.from_yaml_config(config, env_overrides=list((env or {}).items()) or None)
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    except Exception as e:  # SkyPilot's schema errors are ValueError subclasses with long texts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a valid SkyPilot task ({first}): fix the YAML") from None


def _float_env(envs: dict, key: str, default: float | None = None) -> float | None:
    raw = envs.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"env {key}={raw!r} is not a number: pass e.g. --env {key}=1.5") from None


def local_catalog_clouds() -> list[str]:
    """Clouds whose SkyPilot catalog is on this machine (a task with no cloud is priced on each)."""
    root = catalog_file("aws").parent.parent
    return sorted(p.parent.name for p in root.glob("*/vms.csv")) if root.is_dir() else []


def allowed_clouds() -> list[str] | None:
    """`allowed_clouds` of SkyPilot's config (~/.sky/config.yaml, read by SkyPilot's own loader); None = any."""
    from sky import skypilot_config

    allowed = skypilot_config.get_nested(("allowed_clouds",), None)
    return [str(c).lower() for c in allowed] if allowed else None


def enabled_clouds() -> list[str] | None:
    """The compute clouds `sky check` enabled, from SkyPilot's local state; None when it has never run here
    (the state database is not created just to ask)."""
    from sky import global_user_state, skypilot_config
    from sky.clouds.cloud import CloudCapability
    from sky.skylet import runtime_utils

    if not Path(runtime_utils.get_runtime_dir_path(".sky/state.db")).is_file():
        return None
    try:
        clouds = global_user_state.get_cached_enabled_clouds(CloudCapability.COMPUTE,
                                                              skypilot_config.get_active_workspace())
    except Exception:  # an unreadable or older state database: treated as unknown, and said so
        return None
    return [str(c).lower() for c in clouds] or None


def priced_clouds() -> tuple[list[str], str]:
    """The clouds a task with no cloud of its own is priced on, as SkyPilot's optimizer would pick
    from: catalogs on this machine, within allowed_clouds, among the clouds `sky check` enabled."""
    have, allowed, enabled = local_catalog_clouds(), allowed_clouds(), enabled_clouds()
    clouds = [c for c in have if (allowed is None or c in allowed) and (enabled is None or c in enabled)]
    why = (f"catalogs here: {', '.join(have) or 'none'}; allowed_clouds: "
           f"{', '.join(allowed) if allowed else 'any'}; sky check: "
           f"{', '.join(enabled) if enabled else 'not run here (every cloud with a catalog)'}")
    return clouds, why


def _price_option(res, cloud: str, spot: bool | None, options: list, errors: list) -> None:
    use_spot = res.use_spot if spot is None else spot
    acc = res.accelerators or {}
    region = res.region
    try:
        if acc:
            (name, count), = acc.items()
            usd, instance, source = gpu_price(f"{name}:{int(count)}", cloud=cloud, region=region, spot=use_spot)
            options.append((usd, instance, source, f"{name}:{int(count)}", int(count), use_spot))
        elif res.instance_type:
            usd, instance, source = gpu_price(None, cloud=cloud, region=region, spot=use_spot,
                                              instance_type=res.instance_type)
            options.append((usd, instance, source, "cpu", 0, use_spot))
        else:
            usd, instance, source = cpu_price(res, cloud=cloud, region=region, spot=use_spot)
            options.append((usd, instance, source, "cpu", 0, use_spot))
    except UserError as e:
        errors.append(str(e))


def _res_clouds(res, clouds: list[str], errors: list) -> list[str]:
    if res.cloud is None:
        return clouds
    cloud, allowed = str(res.cloud).lower(), allowed_clouds()
    if allowed is not None and cloud not in allowed:
        errors.append(f"the task asks for {cloud}, not in allowed_clouds {allowed} (~/.sky/config.yaml): "
                      "add it there or change resources.cloud")
        return []
    return [cloud]


def placements(task, budgets) -> tuple[list[tuple], list[str], str]:
    """Every (usd/h per node, instance, source, accelerator, gpus, spot) the task's resources allow, spot
    and on-demand, on the clouds SkyPilot would use; the errors of those it could not price; the clouds' basis."""
    clouds, why = priced_clouds()
    options, errors = [], []
    if not local_catalog_clouds():  # no catalog here at all: ask the reference cloud, whose error says so
        clouds = [budgets.reference["cloud"]]
    elif not clouds:
        errors.append(f"no cloud left to price ({why}): allow a cloud whose catalog is here, or run `sky check`")
    for res in task.resources:
        for cloud in _res_clouds(res, clouds, errors):
            for use_spot in (True, False):
                _price_option(res, cloud, use_spot, options, errors)
    if not options and not local_catalog_clouds():  # offline: the documented fallback price, labelled
        for res in task.resources:
            for name, count in (res.accelerators or {}).items():
                usd, source = gpu_hourly_usd(budgets.reference, f"{name}:{int(count)}", cloud=budgets.reference["cloud"])
                options.append((usd, "fallback", f"FALLBACK PRICE: {source}", f"{name}:{int(count)}", int(count), True))
    return options, errors, why


def estimate(task, budgets, *, spot: bool | None = None, data: Path | None = None,
             tokenizer: str | None = None) -> Estimate:
    """Hours and dollars for one run of `task` at catalog prices (training tasks: from the plan)."""
    envs = dict(task.envs)
    phase = envs.get("BUDGET_PHASE") or "training"
    budgets.phase(phase)  # unknown phase -> UserError
    nodes = int(task.num_nodes or 1)
    options, errors, clouds_why = placements(task, budgets)
    want_spot = spot if spot is not None else _task_spot(task)
    wanted = [o for o in options if o[5] == want_spot or o[1] == "fallback"]
    if not wanted:
        raise UserError(errors[0] if errors else "the task names no resources to price: add resources to the YAML")
    hourly, instance, source, accelerator, gpus, use_spot = min(wanted)
    spread = price_spread(options, accelerator, hourly, instance)
    plan = None
    runs = task_profile(task.run if isinstance(task.run, str) else None, envs)
    if runs is not None and runs.trains:
        provisioning = _float_env(envs, "OVERHEAD_HOURS")
        if provisioning is not None and provisioning < 0:
            raise UserError(f"env OVERHEAD_HOURS={provisioning:g} must be >= 0: pass e.g. --env OVERHEAD_HOURS=0.2")
        plans: dict = {}  # one plan per accelerator and spot: the speed and preemptions differ, the data do not

        def plan_for(acc: str, on_spot: bool):
            if (acc, on_spot) not in plans:
                plans[acc, on_spot] = training_plan(task, runs, envs, accelerator=acc.partition(":")[0], gpus=gpus,
                                                    nodes=nodes, data=data, tokenizer=tokenizer,
                                                    provisioning=provisioning, spot=on_spot)
            return plans[acc, on_spot]
        plan = plan_for(accelerator, use_spot)
        overhead = plan.overhead_hours
        hours = plan.compute_hours + overhead
        hours_interval = {k: v + overhead for k, v in plan.compute_hours_interval.items()}
        basis = (f"{plan.trained_tokens:,.0f} trained tokens ({plan.recipe}) / ({plan.tokens_per_s_per_gpu:,.0f} "
                 f"tok/s/GPU x {gpus} GPUs x {nodes} node(s)) = {plan.compute_hours:.3f} h + {overhead:.3f} h "
                 "overheads (lines above)")
        ranked = rank_placements(options, lambda acc, on_spot: plan_for(acc, on_spot).compute_hours
                                 + plan_for(acc, on_spot).overhead_hours, nodes)
    else:
        hours, basis = _other_hours(task, envs)
        hours_interval = {"low": hours, "expected": hours, "high": hours}
        ranked = rank_placements(options, lambda acc, on_spot: hours, nodes)
    api_usd = _float_env(envs, "EST_API_USD", 0.0)
    usd_interval = {k: hours_interval[k] * spread[k] * nodes + api_usd for k in ("low", "expected", "high")}
    return Estimate(phase=phase, hours=hours, compute_usd=hours * hourly * nodes, api_usd=api_usd, hourly_usd=hourly,
                    nodes=nodes, gpus_per_node=gpus, accelerator=accelerator, instance=instance, spot=use_spot,
                    price_source=source, basis=basis, plan=plan, hours_interval=hours_interval,
                    hourly_interval=spread, usd_interval=usd_interval, placements=ranked, clouds=clouds_why)


def _task_spot(task) -> bool:
    return any(bool(r.use_spot) for r in task.resources)


def _other_hours(task, envs) -> tuple[float, str]:
    est_hours = _float_env(envs, "EST_HOURS")
    if est_hours is None:
        raise UserError(f"{task.name}: no way to estimate hours: run a training profile (03_train) or set env "
                        "EST_HOURS in the YAML")
    if est_hours <= 0:
        raise UserError(f"env EST_HOURS={est_hours:g} must be > 0: pass e.g. --env EST_HOURS=1.5")
    return est_hours, f"EST_HOURS={est_hours:g} from the task's envs"


def rank_placements(options: list, hours_of, nodes: int) -> list[tuple]:
    """(usd, usd/h, hours, option) of every placement, cheapest first; an accelerator the speed model
    does not know is left out (the chosen placement raises its own error)."""
    ranked = []
    for o in options:
        try:
            hours = hours_of(o[3], o[5])
        except UserError:
            continue
        ranked.append((o[0] * hours * nodes, o[0], hours, o))
    return sorted(ranked, key=lambda r: (r[0], r[3][1]))


def price_spread(options: list, accelerator: str, hourly: float, instance: str) -> dict:
    """One node's price: low = the cheapest spot placement of `accelerator`, expected = the one chosen,
    high = on-demand for the chosen instance (what a run pays when spot capacity is not there)."""
    same = [o for o in options if o[3] == accelerator]
    low = min([o[0] for o in same if o[5]] + [hourly])
    high = max([hourly] + [o[0] for o in same if not o[5] and o[1] == instance])
    return {"low": low, "expected": hourly, "high": high}


def training_plan(task, runs: TaskProfile, envs: dict, *, accelerator: str, gpus: int, nodes: int,
                  data: Path | None, tokenizer: str | None, provisioning: float | None, spot: bool):
    """The plan of the recipe the task's profile trains, with its model after the task's overrides (08_prefer:
    the SFT model DPO starts from, when it is named; the run's own {run_dir}/model has the recipe's shape)."""
    train = runs.train_params
    model = str(train.get("model") or "") if runs.training_phase == "03_train" else str(train.get("sft_model") or "")
    if "{run_dir}" in model:
        model = ""
    extra = []
    if runs.training_phase == "08_prefer":
        data = None  # clean.jsonl holds DPO's prompts, not its pairs: TRAIN_TOKENS states the pair tokens
        extra = [sampling_overhead(envs, train)]
    return make_plan(task.name, runs.recipe(), base_model=model, accelerator=accelerator,
                     gpus_per_node=gpus, nodes=nodes, data=data, tokenizer=tokenizer,
                     tokens_override=_float_env(envs, "TRAIN_TOKENS"),
                     tps_override=_float_env(envs, "TOKENS_PER_S_PER_GPU"), provisioning_hours=provisioning,
                     packing=train.get("packing"), spot=spot,
                     save_steps=int(_float_env(envs, "SAVE_STEPS") or train.get("save_steps") or 0), extra=extra)


def sampling_overhead(envs: dict, params: dict) -> Overhead:
    """08_prefer's in-process answers on node 0 (k per prompt for the pairs, then base, SFT and DPO on the
    comparison's questions): the task's SAMPLING_HOURS env, stated as assumed -- no decode rate is measured yet."""
    hours = _float_env(envs, "SAMPLING_HOURS")
    if hours is None or hours < 0:
        raise UserError("a DPO task needs env SAMPLING_HOURS (>= 0): the hours node 0 samples answers for the pairs "
                        "and the comparison, e.g. --env SAMPLING_HOURS=1")
    what = (f"{params.get('max_prompts') or 'all'} prompts x k={params.get('k')} answers of <= "
            f"{params.get('max_new_tokens')} tokens + 3 models x the comparison's questions")
    return Overhead("sampling answers (node 0)", hours, f"{hours:g} h for {what}",
                    "assumed: the task's SAMPLING_HOURS env (no measured decode rate yet; the other GPUs wait)")


def cpu_price(res, *, cloud: str, region: str | None, spot: bool) -> tuple[float, str, str]:
    """Cheapest CPU instance satisfying the task's cpus/memory, from SkyPilot's catalog."""
    from sky import catalog

    if not catalog_file(cloud).is_file():
        return gpu_price(None, cloud=cloud, region=region, spot=spot, instance_type="?")  # raises the one-line error
    instance = catalog.get_default_instance_type(cpus=res.cpus, memory=res.memory, clouds=cloud, region=region)
    if not instance:
        raise UserError(f"no {cloud} instance with cpus={res.cpus} memory={res.memory} in SkyPilot's catalog: "
                        "change resources.cpus/memory")
    return gpu_price(None, cloud=cloud, region=region, spot=spot, instance_type=instance)


def remaining_budget(budgets, phase: str, run_dir: str | os.PathLike | None) -> tuple[float, float]:
    """(spent, remaining) for `phase`: the cap minus the run's ledger."""
    spent = 0.0
    if run_dir:
        ledger_dir = Path(run_dir) / "ledger"
        if not ledger_dir.is_dir():
            raise UserError(f"no ledger at {ledger_dir}: pass the run directory of an earlier phase, or omit --run-dir")
        spent = Ledger(ledger_dir, writer="launch").spent(phase)
    return spent, budgets.phase(phase).cap - spent


def check_budget(est: Estimate, budgets, spent: float, remaining: float, *, force: bool) -> None:
    if est.usd > remaining + 1e-9:
        msg = (f"estimated ${est.usd:,.2f} for {est.phase} exceeds the remaining ${remaining:,.2f} of its "
               f"${budgets.phase(est.phase).cap:,.2f} cap (spent ${spent:,.2f}): shrink the task, raise "
               f"phases.{est.phase}.cap in budgets.yaml, or pass --force")
        if not force:
            raise BudgetExceeded(msg)
        print(f"warning (--force): {msg}", file=sys.stderr)


def _interval_line(est: Estimate) -> str:
    h, p, u = est.hours_interval, est.hourly_interval, est.usd_interval
    return (f"interval:  low {h['low']:.2f} h x ${p['low']:,.3f}/h = ${u['low']:,.2f} | expected {h['expected']:.2f} h x "
            f"${p['expected']:,.3f}/h = ${u['expected']:,.2f} | high {h['high']:.2f} h x ${p['high']:,.3f}/h = "
            f"${u['high']:,.2f}  [hours: the speed interval + overhead; $/h per node: cheapest spot / chosen / "
            f"on-demand; x {est.nodes} node(s) + API]")


PLACEMENTS_SHOWN = 5


def placement_lines(est: Estimate) -> list[str]:
    """The cheapest few placements the task's resources allow, with time to finish."""
    lines = [f"clouds:    {est.clouds}"]
    for i, (usd, hourly, hours, o) in enumerate(est.placements[:PLACEMENTS_SHOWN]):
        chosen = " <- priced above" if (o[1], o[3], o[5]) == (est.instance, est.accelerator, est.spot) else ""
        lines.append(f"{'placement' if i == 0 else '':10} {o[3]} {'spot' if o[5] else 'on-demand':9} "
                     f"{hours:6.2f} h x ${hourly:,.3f}/h x {est.nodes} = ${usd:,.2f}  [{o[2]}]{chosen}")
    if len(est.placements) > PLACEMENTS_SHOWN:
        lines.append(f"{'':10} ... {len(est.placements) - PLACEMENTS_SHOWN} more placement(s), dearer")
    return lines


def describe(est: Estimate, budgets, spent: float, remaining: float) -> str:
    pb = budgets.phase(est.phase)
    kind = "spot" if est.spot else "on-demand"
    lines = []
    if est.plan is not None:
        lines += describe_plan(est.plan)
    lines += [
        f"resources: {est.nodes} x {est.instance} ({est.accelerator}, {kind}) at ${est.hourly_usd:,.3f}/h per node "
        f"[{est.price_source}]",
        f"hours:     {est.hours:.2f} h  [{est.basis}]",
        f"estimate:  ${est.usd:,.2f} (compute ${est.compute_usd:,.2f} + API ${est.api_usd:,.2f}"
        + (" [the task's EST_API_USD env; its derivation is beside it in the YAML])" if est.api_usd else ")"),
        _interval_line(est),
        *placement_lines(est),
        f"budget:    {est.phase}: target ${pb.target:,.2f}, cap ${pb.cap:,.2f}, spent ${spent:,.2f}, "
        f"remaining ${remaining:,.2f} -> after this run ${remaining - est.usd:,.2f}",
    ]
    if est.usd + spent > pb.target:
        lines.append(f"note:      spent + estimate ${spent + est.usd:,.2f} is above the {est.phase} target ${pb.target:,.2f}")
    return "\n".join(lines)


def fits_budget(usd: float, budgets, env: dict, *, data: Path | None = None, tokenizer: str | None = None,
                spot: bool | None = None) -> list[str]:
    """The reverse question: every placement of every training task in sky/ whose expected cost fits in
    `usd`, cheapest first, with hours and the interval's high end (each task's TRAIN_TOKENS, or --data)."""
    if not usd > 0:
        raise UserError(f"--budget {usd:g} must be > 0: pass the dollars you can spend, e.g. --budget 50")
    rows, skipped = [], []
    for path in sorted((REPO / "sky").glob("*.yaml")):
        task = load_task(path, env)
        runs = task_profile(task.run if isinstance(task.run, str) else None, dict(task.envs))
        if runs is None or not runs.trains:
            continue
        try:
            est = estimate(task, budgets, spot=spot, data=data, tokenizer=tokenizer)
        except UserError as e:
            skipped.append(f"  {path.name}: not priced ({e})")
            continue
        slow = est.hours_interval["high"] / est.hours  # the speed interval's slow end, as a factor on hours
        for cost, hourly, hours, o in est.placements:
            if cost <= usd:
                rows.append((cost, f"  ${cost:8,.2f} (slow: ${cost * slow:,.2f})  {hours:6.2f} h  {path.name:24} "
                                   f"{est.plan.recipe:18} {o[3]} {'spot' if o[5] else 'on-demand'} [{o[2]}]"))
    lines = [f"fits in ${usd:,.2f} (expected cost; slow: at the low end of the speed interval, same price):"]
    lines += [text for _, text in sorted(rows)] or ["  nothing: raise --budget, or plan a smaller task"]
    return lines + skipped


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task_yaml", nargs="?", help="the task to price (leave out with --budget: every training task)")
    ap.add_argument("--budget", type=float, default=None, metavar="USD",
                    help="which training tasks and placements fit in USD, and how long each takes")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--spot", dest="spot", action="store_true", default=None, help="price and launch on spot")
    g.add_argument("--on-demand", dest="spot", action="store_false", help="price and launch on demand")
    ap.add_argument("--force", action="store_true", help="launch even if the estimate exceeds the remaining budget")
    ap.add_argument("--dry-run", action="store_true", help="print the estimate and stop")
    ap.add_argument("--cluster", default=None, help="launch as a cluster (sky launch -c NAME) instead of a managed job")
    ap.add_argument("--run-dir", default=os.environ.get("SHEAR_RUN_DIR"),
                    help="run whose ledger counts as spent, whose data/clean.jsonl is planned, where the plan is saved")
    ap.add_argument("--data", default=None, help="clean.jsonl to plan from (default: <run-dir>/data/clean.jsonl)")
    ap.add_argument("--tokenizer", default=None,
                    help="count tokens with this tokenizer (a local directory) instead of the recipe's base model's")
    ap.add_argument("--calibrate", nargs="+", metavar="RUN_DIR", default=None,
                    help="add the measured speed of finished runs (train/metrics.json) as measured rows")
    ap.add_argument("--budgets", default=str(BUDGETS_YAML))
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="override a task env")
    args = ap.parse_args(argv)

    if args.calibrate:
        for row, dest in calibrate(args.calibrate):
            print(calibrated_line(row, dest))
        return
    env = env_flags(args.env)
    budgets = load_budgets(args.budgets)
    if args.budget is not None:
        print("\n".join(fits_budget(args.budget, budgets, env, data=find_data(args.data, args.run_dir),
                                     tokenizer=args.tokenizer, spot=args.spot)))
        return
    if not args.task_yaml:
        raise UserError("no task to price: pass sky/<task>.yaml, or --budget USD to list what fits")
    task = load_task(args.task_yaml, env)
    est = estimate(task, budgets, spot=args.spot, data=find_data(args.data, args.run_dir), tokenizer=args.tokenizer)
    spent, remaining = remaining_budget(budgets, est.phase, args.run_dir)
    print(f"task:      {task.name} ({args.task_yaml})")
    print(describe(est, budgets, spent, remaining))
    if est.plan is not None:
        p = est.plan
        p.hours, p.hourly_usd, p.usd, p.price_source = est.hours, est.hourly_usd, est.usd, est.price_source
        p.usd_interval = est.usd_interval
        p.spent_usd, p.remaining_usd = spent, remaining
        p.lines = describe(est, budgets, spent, remaining).splitlines()
        if args.run_dir:  # saved before the budget check: a refused plan is worth keeping too
            print(f"plan:      saved to {save_plan(args.run_dir, p)}")
    check_budget(est, budgets, spent, remaining, force=args.force)
    if args.dry_run:
        print("dry run: nothing launched")
        return
    if args.spot is not None:
        task.set_resources({r.copy(use_spot=args.spot) for r in task.resources})
    request_id = sky_backend.launch(task, managed=args.cluster is None, cluster_name=args.cluster)
    print(f"launched: request {request_id}; follow with `sky api logs {request_id}`"
          + ("" if args.cluster else " or `sky jobs queue`"))


if __name__ == "__main__":
    main()
