"""The budget report of a run: report/budget.md + report/budget.png.

    python -m lib.budget report runs/<id> [--budgets budgets.yaml]

What a person wants to know after a run: how much each phase spent against its target and
cap, how spend grew over time (API vs GPU), what the same work would have cost on the
reference OpenAI model and on spot A100s, unit costs (per kept example, per trained token,
per judged answer), a projection to the seed recipes' scale, and the 2023 seed recipes'
published costs beside ours.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import atomic_write
from lib.budget.plans import load_plans
from lib.core.figures import save

from .config import PHASES, Budgets, load_budgets
from .gpu import parse_accelerator, reference_gpu_hourly
from .ledger import Ledger
from .throughput import reference_speed

# Published 2023 costs of the recipes this project reproduces (USD; None = not reported).
SEED_RECIPES = [
    # name, data USD, training USD, note
    ("Alpaca-7B", 500.0, 100.0, "52K self-instruct examples from text-davinci-003 (<$500); 3 h on 8x A100-80GB (<$100)"),
    ("Vicuna-7B", None, 140.0, "ShareGPT conversations (no API spend); ~$140 on managed spot A100s"),
    ("Vicuna-13B", None, 300.0, "ShareGPT conversations; ~$300 on managed spot A100s (~$1,000 on demand)"),
    ("GPT4All", 500.0, 100.0, "~$500 of gpt-3.5-turbo API; ~8 h LoRA on 8x A100-80GB (~$100)"),
]
ALPACA_EXAMPLES = 52_002
ALPACA_EPOCHS = 3
ALPACA_MODEL = "huggyllama/llama-7b"  # what the projection trains: Alpaca-7B's base, full fine-tune


@dataclass
class RunFacts:
    """Counts read from a run directory, where the phases wrote them (None = not there)."""
    generated: int | None = None
    kept: int | None = None
    train_tokens: int | None = None
    judged: int | None = None
    pairs: int | None = None  # preference pairs kept (prefer/pairs.jsonl, 08_prefer)
    sources: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # train/metrics.json as written


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def trained_tokens(metrics: dict) -> int | None:
    """Trained tokens of a run: train/metrics.json's `trained_tokens`, the one documented key
    (lib/train/sft.py writes it; docs/architecture.md). No other counter stands in for it."""
    v = metrics.get("trained_tokens")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def run_facts(run_dir: Path) -> RunFacts:
    facts = RunFacts()
    facts.generated = _count_lines(run_dir / "data" / "generated.jsonl")
    facts.kept = _count_lines(run_dir / "data" / "clean.jsonl")
    metrics = run_dir / "train" / "metrics.json"
    if metrics.is_file():
        try:
            facts.metrics = json.loads(metrics.read_text())
        except json.JSONDecodeError:
            facts.metrics = {}
        facts.train_tokens = trained_tokens(facts.metrics) if isinstance(facts.metrics, dict) else None
    judgments = run_dir / "eval" / "judgments.jsonl"
    facts.judged = _count_lines(judgments)
    facts.pairs = _count_lines(run_dir / "prefer" / "pairs.jsonl")
    return facts


@dataclass
class Summary:
    spent: dict[str, float]
    api_usd: dict[str, float]
    gpu_usd: dict[str, float]
    reference_api_usd: dict[str, float]
    compute_hours: dict[str, float]
    gpu_hourly: float
    gpu_source: str
    reference_train_usd: float | None
    reference_train_hours: float | None
    timeline: list[tuple[float, str, float, float]]  # (time, "api"|"gpu", usd, start of the spend)
    n_api_calls: int
    tokens: dict[str, int]
    facts: RunFacts
    open_intervals: int
    reference_speed_source: str = ""  # how the reference tokens/s/GPU was derived


def summarize(run_dir: Path, budgets: Budgets) -> Summary:
    ledger = Ledger(run_dir / "ledger", writer="report")
    recs = ledger.records()
    zero = {p: 0.0 for p in PHASES}
    spent, api_usd, gpu_usd, ref_api, hours = dict(zero), dict(zero), dict(zero), dict(zero), dict(zero)
    timeline = []
    tokens = {"prompt": 0, "completion": 0, "cached": 0}
    n_api = open_intervals = 0
    for r in recs:
        usd = float(r.get("usd") or 0.0)
        spent[r["phase"]] += usd
        if r.get("kind") == "api":
            n_api += 1
            api_usd[r["phase"]] += usd
            ref_api[r["phase"]] += float(r.get("usd_reference") or 0.0)
            tokens["prompt"] += int(r.get("prompt_tokens") or 0)
            tokens["completion"] += int(r.get("completion_tokens") or 0)
            tokens["cached"] += int(r.get("cached_tokens") or 0)
            timeline.append((float(r.get("ts", 0)), "api", usd, float(r.get("ts", 0))))
        elif r.get("kind") == "compute":
            gpu_usd[r["phase"]] += usd
            hours[r["phase"]] += float(r.get("hours") or 0.0) * int(r.get("nodes") or 1)
            open_intervals += bool(r.get("open"))
            timeline.append((float(r.get("end", r.get("ts", 0))), "gpu", usd, float(r.get("start", r.get("ts", 0)))))
    timeline.sort()
    ref = budgets.reference
    gpu_hourly, gpu_source = reference_gpu_hourly(ref)
    facts = run_facts(run_dir)
    ref_train_usd = ref_train_hours = None
    ref_speed = (None, "")
    if facts.train_tokens:
        acc, n_gpus = parse_accelerator(ref["gpu"])
        ref_speed = run_reference_speed(facts.metrics, acc)
        if ref_speed[0]:
            ref_train_hours = facts.train_tokens / (ref_speed[0] * n_gpus) / 3600.0
            ref_train_usd = ref_train_hours * gpu_hourly
    return Summary(spent, api_usd, gpu_usd, ref_api, hours, gpu_hourly, gpu_source, ref_train_usd,
                   ref_train_hours, timeline, n_api, tokens, facts, open_intervals, ref_speed[1])


def run_reference_speed(metrics: dict, accelerator: str) -> tuple[float | None, str]:
    """The run's own model, method and max_length on the reference GPUs, priced by the launch plan's
    speed model; (None, why) when the model's shape is not known here."""
    model = str(metrics.get("model_id") or "")
    try:
        return reference_speed(model, accelerator, lora=bool(metrics.get("lora")),
                               max_length=int(metrics.get("max_length") or 512), recipe=str(metrics.get("recipe") or ""))
    except UserError as e:
        return None, f"n/a: {e}"


def _usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if abs(x) >= 0.01 else f"${x:.6f}"


def _per(total: float, n: int | None) -> str:
    return _usd(total / n) if n else "n/a"


def _ratio(actual, planned) -> str:
    """actual / plan and the plan's error in percent of the plan."""
    if actual is None or not planned:
        return "n/a"
    return f"{actual / planned:.2f}x ({(actual - planned) / planned:+.0%})"


def _span(p: dict) -> str:
    """' (low-high)' of a saved plan's hours interval (compute + overhead), when it has one."""
    h, over = p.get("compute_hours_interval"), float(p.get("overhead_hours") or 0.0)
    return f" ({h['low'] + over:.3f}-{h['high'] + over:.3f})" if h else ""


def timing_rows(p: dict, m: dict) -> list[str]:
    """train() wall time (the plan's training + overhead lines vs metrics.json `seconds`) and the run's own
    projection at 5% of its steps vs its final training loop (lib/train/callbacks.py `pace_projection`)."""
    planned = (p.get("compute_hours") or 0.0) + (p.get("overhead_hours") or 0.0)
    if p.get("accelerator") != "cpu":
        planned -= sum(o.get("hours", 0.0) for o in p.get("overheads") or [] if o.get("name") == "provisioning + setup")
    rows = [f"| train() wall time, s | {planned * 3600:,.1f} | {'n/a' if m.get('seconds') is None else format(m['seconds'], ',.1f')} "
            f"| {_ratio(m.get('seconds'), planned * 3600)} |"]
    pace, loop = m.get("pace_projection") or {}, m.get("train_loop_seconds")
    if pace.get("projected_s"):
        rows.append(f"| training loop, s (projected at step {pace.get('step')} of {pace.get('steps')}) | "
                    f"{pace['projected_s']:,.1f} | {'n/a' if loop is None else format(loop, ',.1f')} | "
                    f"{_ratio(loop, pace['projected_s'])} |")
    return rows


def plan_vs_actual(run_dir: Path, s: Summary) -> list[str]:
    """The newest launch plan (<run_dir>/plan/*.json, lib/launch/plan.py) beside what training measured:
    the next estimate is only as good as this comparison."""
    plans = load_plans(run_dir)
    if not plans:
        return []
    p = plans[-1]
    m = s.facts.metrics or {}
    world = m.get("world_size") or None
    rows = m.get("throughput") or []
    secs = sum(r.get("seconds") or 0.0 for r in rows)
    # useful_tokens_per_s already sums all ranks; per GPU divides by the world size
    tps = (sum((r.get("useful_tokens_per_s") or 0.0) * (r.get("seconds") or 0.0) for r in rows) / secs / world
           if (secs and world) else None)
    nodes = m.get("nodes") or p.get("nodes") or 1
    hours = s.compute_hours["training"] / nodes if s.compute_hours["training"] else None

    def num(x, fmt=",.0f"):
        return "n/a" if x is None else format(x, fmt)

    lines = ["", f"## Plan vs actual (training, plan `{p.get('task')}` of "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(p.get('created') or 0))})", "",
             "| what | plan | actual | actual / plan |", "|---|---:|---:|---:|",
             f"| base model | {p.get('base_model')} | {m.get('model_id', 'n/a')} | |",
             f"| nodes x GPUs | {p.get('nodes')} x {p.get('gpus_per_node')} | "
             f"{m.get('nodes', 'n/a')} x {m.get('procs_per_node', 'n/a')} | |",
             f"| epochs | {num(p.get('epochs'), 'g')} | {num(m.get('epochs'), 'g')} | |",
             f"| optimizer steps | {num(p.get('optimizer_steps'))} | {num(m.get('optimizer_steps'))} | "
             f"{_ratio(m.get('optimizer_steps'), p.get('optimizer_steps'))} |",
             f"| trained tokens | {num(p.get('trained_tokens'))} | {num(s.facts.train_tokens)} | "
             f"{_ratio(s.facts.train_tokens, p.get('trained_tokens'))} |",
             f"| tokens/s/GPU | {num(p.get('tokens_per_s_per_gpu'), ',.1f')} | {num(tps, ',.1f')} | "
             f"{_ratio(tps, p.get('tokens_per_s_per_gpu'))} |",
             f"| MFU | {num(p.get('mfu'), '.3f')} | {num(m.get('mfu'), '.3f')} | {_ratio(m.get('mfu'), p.get('mfu'))} |",
             f"| hours (wall) | {num(p.get('hours'), '.3f')}{_span(p)} | "
             f"{num(hours, '.3f')} | {_ratio(hours, p.get('hours'))} |",
             *timing_rows(p, m),
             f"| dollars (training) | {_usd(p.get('usd'))} | {_usd(s.spent['training'])} | "
             f"{_ratio(s.spent['training'], p.get('usd'))} |",
             f"| dollars interval | {_usd((p.get('usd_interval') or {}).get('low'))} - "
             f"{_usd((p.get('usd_interval') or {}).get('high'))} | {_usd(s.spent['training'])} | |", "",
             f"Planned speed from {p.get('throughput_source')}; planned tokens from {p.get('tokens_source')}. "
             "Actual hours are the ledger's training node-hours / nodes (excluding provisioning); "
             "actual tokens/s/GPU is the trainer's useful tokens/s over its logged intervals / world size. "
             f"`python -m lib.launch --calibrate {run_dir}` adds this run's measured speed and rates to the next plan."]
    return lines


def render_markdown(run_dir: Path, budgets: Budgets, s: Summary) -> str:
    ref = budgets.reference
    f = s.facts
    lines = [f"# Budget report: {run_dir.name}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from `{run_dir / 'ledger'}` and "
             f"`{budgets.path}`. Amounts in {budgets.currency}.", "",
             "## Spent vs budget per phase", "",
             "| phase | spent | API | GPU/CPU | target | cap | % of target | left to cap |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in PHASES:
        pb = budgets.phase(p)
        pct = f"{100 * s.spent[p] / pb.target:.1f}%" if pb.target else "n/a"
        lines.append(f"| {p} | {_usd(s.spent[p])} | {_usd(s.api_usd[p])} | {_usd(s.gpu_usd[p])} | {_usd(pb.target)} "
                     f"| {_usd(pb.cap)} | {pct} | {_usd(pb.cap - s.spent[p])} |")
    total = sum(s.spent.values())
    lines += ["", f"Total spent: **{_usd(total)}** over {s.n_api_calls} API calls "
              f"({s.tokens['prompt']:,} prompt tokens, {s.tokens['cached']:,} of them cached, "
              f"{s.tokens['completion']:,} completion tokens) and "
              f"{sum(s.compute_hours.values()):.3f} node-hours of compute."]
    if s.open_intervals:
        lines.append(f"{s.open_intervals} compute interval(s) are still open (a killed or running task): "
                     "counted up to their last heartbeat.")
    m = f.metrics or {}
    if "model_id" in m:  # what training says it trained (train/metrics.json, docs/architecture.md)
        lines += ["", f"Trained: `{m['model_id']}` (recipe {m.get('recipe', 'n/a')}) on {m.get('nodes')} node(s) x "
                  f"{m.get('procs_per_node')} process(es), {m.get('epochs')} epoch(s) configured, "
                  f"{m.get('optimizer_steps')} optimizer steps, "
                  f"{f'{f.train_tokens:,}' if f.train_tokens else 'n/a'} trained tokens."]
    ref_api_total = sum(s.reference_api_usd.values())
    lines += ["", "## The same run elsewhere", "",
              "| what | this run | on the reference | how the reference is priced |", "|---|---:|---:|---|",
              f"| API calls (all phases) | {_usd(sum(s.api_usd.values()))} | {_usd(ref_api_total)} | "
              f"every call's tokens at {ref['api_model']} (genai-prices) |",
              f"| training compute | {_usd(s.gpu_usd['training'])} | {_usd(s.reference_train_usd)} | "
              + (f"{f.train_tokens:,} trained tokens / ({s.reference_speed_source} x "
                 f"{ref['gpu']}) = {s.reference_train_hours:.4f} h at {_usd(s.gpu_hourly)}/h ({s.gpu_source}) |"
                 if s.reference_train_hours is not None else
                 f"{s.reference_speed_source or 'no `trained_tokens` in train/metrics.json'} |")]
    lines += ["", "## Unit costs", "",
              "| unit | count | this run | on the reference API |", "|---|---:|---:|---:|",
              f"| kept example (data) | {f.kept if f.kept is not None else 'n/a'} | {_per(s.spent['data'], f.kept)} "
              f"| {_per(s.reference_api_usd['data'], f.kept)} |",
              f"| 1M trained tokens (training) | {f'{f.train_tokens:,}' if f.train_tokens else 'n/a'} tokens | "
              f"{_per(s.spent['training'] * 1e6, f.train_tokens)} | {_per((s.reference_train_usd or 0.0) * 1e6, f.train_tokens)} "
              f"(on {ref['gpu']}) |",
              f"| judged answer (evaluation) | {f.judged if f.judged is not None else 'n/a'} | "
              f"{_per(s.spent['evaluation'], f.judged)} | {_per(s.reference_api_usd['evaluation'], f.judged)} |",
              f"| kept preference pair (preference: sampling, judging, DPO) | {f.pairs if f.pairs is not None else 'n/a'} | "
              f"{_per(s.spent['preference'], f.pairs)} | {_per(s.reference_api_usd['preference'], f.pairs)} |"]
    lines += plan_vs_actual(run_dir, s)
    lines += ["", "## Projection to the seed recipes' scale", ""]
    if f.kept:
        data_at_scale = s.reference_api_usd["data"] / f.kept * ALPACA_EXAMPLES
        lines.append(f"- Data: {ALPACA_EXAMPLES:,} kept examples (Alpaca) at this run's {ref['api_model']} cost per "
                     f"kept example = **{_usd(data_at_scale)}** (target {_usd(budgets.phase('data').target)}).")
    else:
        lines.append("- Data: no data/clean.jsonl in this run, nothing to project.")
    if f.train_tokens and f.kept:
        tok_per_example = f.train_tokens / f.kept
        acc, n_gpus = parse_accelerator(ref["gpu"])
        alpaca_tps, _ = reference_speed(ALPACA_MODEL, acc, max_length=512, recipe="alpaca_7b")
        hrs = ALPACA_EXAMPLES * tok_per_example * ALPACA_EPOCHS / (alpaca_tps * n_gpus) / 3600
        lines.append(f"- Training: {ALPACA_EXAMPLES:,} examples x {tok_per_example:,.0f} tokens x {ALPACA_EPOCHS} epochs "
                     f"of {ALPACA_MODEL} at {alpaca_tps:,.0f} tok/s/GPU on {ref['gpu']} = {hrs:.2f} h = **{_usd(hrs * s.gpu_hourly)}** "
                     f"(target {_usd(budgets.phase('training').target)}; run `python -m lib.launch` for a recipe estimate).")
    else:
        lines.append("- Training: needs trained tokens (train/metrics.json) and kept examples to project; "
                     "`python -m lib.launch sky/train_7b.yaml --dry-run` estimates a cloud run.")
    lines += ["", "## Seed recipes (2023, published) beside this run", "",
              "| recipe | data | training | notes |", "|---|---:|---:|---|"]
    for name, data, train, note in SEED_RECIPES:
        lines.append(f"| {name} | {_usd(data)} | {_usd(train)} | {note} |")
    lines.append(f"| **this run** | {_usd(s.spent['data'])} | {_usd(s.spent['training'])} | "
                 f"on {ref['api_model']}: data {_usd(s.reference_api_usd['data'])}; "
                 f"on {ref['gpu']}: training {_usd(s.reference_train_usd)} |")
    lines += ["", "![budget](budget.png)", ""]
    return "\n".join(lines)


def render_figure(budgets: Budgets, s: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt  # no matplotlib.use(): switching backends inside Jupyter hides later figures

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    xs = range(len(PHASES))
    ax.bar([x - 0.2 for x in xs], [budgets.phase(p).target for p in PHASES], width=0.4, label="target", color="#bbbbbb")
    ax.bar([x + 0.2 for x in xs], [s.spent[p] for p in PHASES], width=0.4, label="spent", color="#1f77b4")
    ax.scatter(list(xs), [budgets.phase(p).cap for p in PHASES], marker="_", s=600, color="#d62728", label="cap", zorder=3)
    for x, p in zip(xs, PHASES):
        ax.annotate(_usd(s.spent[p]), (x + 0.2, s.spent[p]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), PHASES)
    ax.set_ylabel("USD")
    ax.set_title("Spent vs target per phase")
    ax.legend(fontsize=8)

    ax = axes[1]
    if s.timeline:
        t0 = min(start for *_, start in s.timeline)
        for kind, color in (("api", "#1f77b4"), ("gpu", "#ff7f0e")):
            mine = [(t, usd, start) for t, k, usd, start in s.timeline if k == kind]
            if not mine:
                continue
            # API money is spent at an instant (a step); GPU money accrues over each interval (a ramp).
            ts, cum, acc = [(min(st for _, _, st in mine) - t0) / 60], [0.0], 0.0
            for t, usd, start in mine:
                if kind == "gpu":
                    ts.append((start - t0) / 60)
                    cum.append(acc)
                acc += usd
                ts.append((t - t0) / 60)
                cum.append(acc)
            draw = ax.plot if kind == "gpu" else (lambda x, y, **kw: ax.step(x, y, where="post", **kw))
            draw(ts, cum, label=f"{kind.upper()} (${acc:,.4g})", color=color)
        ax.set_xlabel("minutes since first record")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no ledger records", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("cumulative USD")
    ax.set_title("Cumulative spend over time")

    ax = axes[2]
    names = ["this run", "this run on\nreference"] + \
            [n for n, *_ in SEED_RECIPES]
    data = [s.spent["data"], s.reference_api_usd["data"]] + [d or 0.0 for _, d, _, _ in SEED_RECIPES]
    train = [s.spent["training"], s.reference_train_usd or 0.0] + [t or 0.0 for _, _, t, _ in SEED_RECIPES]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], data, width=0.4, label="data (API)", color="#1f77b4")
    ax.bar([x + 0.2 for x in xs], train, width=0.4, label="training (GPU)", color="#ff7f0e")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xticks(list(xs), names, fontsize=7, rotation=20)
    ax.set_ylabel("USD (symlog)")
    ax.set_title("This run beside the 2023 seed recipes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def write_report(run_dir: str | os.PathLike, budgets: Budgets | str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write report/budget.md and report/budget.png for `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: pass the runs/<id> directory of a run")
    if not isinstance(budgets, Budgets):
        budgets = load_budgets(budgets)
    s = summarize(run_dir, budgets)
    md_path, png_path = run_dir / "report" / "budget.md", run_dir / "report" / "budget.png"
    render_figure(budgets, s, png_path)
    text = render_markdown(run_dir, budgets, s)
    atomic_write(md_path, text)
    return md_path, png_path
