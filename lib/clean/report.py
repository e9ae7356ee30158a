"""What cleaning did, for a person to check before paying for GPUs.

`CleanReport` holds the funnel (records in -> out per stage), examples of what each stage
dropped, length distributions before and after, per-source counts and the malformed
records with file:line. `write_report` puts it into the run:

    report/clean.md           table, sources, examples, malformed records
    report/clean_counts.json  the same numbers for machines (and tests)
    report/clean_funnel.png   funnel of records per stage + reply lengths before/after
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lib.core.figures import save
from lib.core.files import atomic_write, atomic_write_json

EXAMPLE_CHARS = 160


@dataclass
class Stage:
    name: str                 # machine name, e.g. "refusal"
    label: str                # what a person reads in the funnel
    enabled: bool
    records_in: int = 0
    dropped: int = 0
    changed: int = 0          # records rewritten, not dropped (HTML converted, roles fixed, split)
    records_out: int = 0
    note: str = ""
    seconds: float = 0.0
    examples: list[dict] = field(default_factory=list)


@dataclass
class CleanReport:
    format: str
    input: str
    records_in: int = 0
    records_out: int = 0
    output_records_alpaca: int = 0
    stages: list[Stage] = field(default_factory=list)
    malformed: list[dict] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)
    lengths_before: list[int] = field(default_factory=list)   # reply characters per record
    lengths_after: list[int] = field(default_factory=list)
    split: dict = field(default_factory=dict)
    flagged_sources: list[str] = field(default_factory=list)
    dropped_sources: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    seconds: float = 0.0

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def counts(self) -> dict:
        """The JSON summary (lengths as percentiles; full lists stay in memory)."""
        d = asdict(self)
        d["lengths_before"] = percentiles(self.lengths_before)
        d["lengths_after"] = percentiles(self.lengths_after)
        d["dropped_by_stage"] = {s.name: s.dropped for s in self.stages}
        return d

    def table(self) -> str:
        rows = ["| stage | on | in | dropped | changed | out | seconds | note |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for s in self.stages:
            rows.append(f"| {s.label} | {'yes' if s.enabled else 'no'} | {s.records_in} | {s.dropped} | "
                        f"{s.changed} | {s.records_out} | {s.seconds:.1f} | {s.note} |")
        return "\n".join(rows)

    def markdown(self) -> str:
        kept = self.records_out / self.records_in if self.records_in else 0.0
        out = [
            "# Cleaning report", "",
            f"Input `{self.input}` ({self.format}): **{self.records_in}** records in, **{self.records_out}** out "
            f"({kept:.1%} kept) in {self.seconds:.1f} s. The training file holds {self.output_records_alpaca} "
            "Alpaca records.", "",
            "## Funnel", "", self.table(), "",
        ]
        return "\n".join(out) + "\n" + self.details()

    def details(self) -> str:
        """Everything after the funnel table: token budget, sources, lengths, malformed, examples."""
        out = []
        if self.split:
            out += ["## Token budget", "", ", ".join(f"{k}: {v}" for k, v in self.split.items()), ""]
        if self.sources:
            out += ["## Sources", "", "| source | in | out | near-dup share | dropped whole |", "|---|---:|---:|---:|---|"]
            for src, d in sorted(self.sources.items(), key=lambda kv: -kv[1].get("in", 0)):
                share = d.get("near_dup_share")
                out.append(f"| {src or '(none)'} | {d.get('in', 0)} | {d.get('out', 0)} | "
                           f"{'' if share is None else f'{share:.0%}'} | {'yes' if src in self.dropped_sources else ''} |")
            out.append("")
        if self.flagged_sources:
            out += [f"Low diversity flagged but kept (it is the only source, dropping it would leave nothing): "
                    f"{', '.join(s or '(none)' for s in self.flagged_sources)}", ""]
        b, a = percentiles(self.lengths_before), percentiles(self.lengths_after)
        out += ["## Reply length (characters)", "", "| | n | p10 | p50 | p90 | max |", "|---|---:|---:|---:|---:|---:|",
                f"| before | {b['n']} | {b['p10']} | {b['p50']} | {b['p90']} | {b['max']} |",
                f"| after | {a['n']} | {a['p10']} | {a['p50']} | {a['p90']} | {a['max']} |", ""]
        if self.malformed:
            out += [f"## Malformed records ({len(self.malformed)})", ""]
            out += [f"- `{m['file']}:{m['line']}` {m['error']}" for m in self.malformed[:50]]
            out.append("")
        out += ["## What each stage dropped (examples)", ""]
        for s in self.stages:
            if not s.examples:
                continue
            out += [f"### {s.label} ({s.dropped})", ""]
            for ex in s.examples:
                out.append(f"- `{ex['id']}` — {ex['detail']}<br>prompt: {_md(ex['prompt'])}<br>reply: {_md(ex['reply'])}")
            out.append("")
        return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ").replace("<", "&lt;")


def example(rec: dict, detail: str, prompt: str, reply: str) -> dict:
    cut = lambda t: t if len(t) <= EXAMPLE_CHARS else t[:EXAMPLE_CHARS] + "…"  # noqa: E731
    return {"id": rec.get("id", ""), "detail": detail, "prompt": cut(prompt), "reply": cut(reply)}


def percentiles(xs: list[int]) -> dict:
    if not xs:
        return {"n": 0, "p10": 0, "p50": 0, "p90": 0, "max": 0, "mean": 0.0}
    s = sorted(xs)
    q = lambda p: s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]  # noqa: E731
    return {"n": len(s), "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": s[-1], "mean": round(sum(s) / len(s), 1)}


def plot_funnel(report: CleanReport, path: str | os.PathLike | None = None):
    """Funnel (records left after each stage, dropped in red) beside reply-length histograms."""
    import matplotlib.pyplot as plt  # no matplotlib.use(): switching backends inside Jupyter hides later figures

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * max(6, len(report.stages) + 2)),
                                  gridspec_kw={"width_ratios": [3, 2]})
    names = ["input"] + [s.label + ("" if s.enabled else " (off)") for s in report.stages]
    left = [report.records_in] + [s.records_out for s in report.stages]
    dropped = [0] + [s.dropped for s in report.stages]
    y = list(range(len(names)))[::-1]
    ax.barh(y, left, color="#4c72b0", label="records left")
    ax.barh(y, dropped, left=left, color="#dd5555", label="dropped here")
    for yi, n, d in zip(y, left, dropped):
        ax.text(n + d, yi, f" {n}" + (f" (-{d})" if d else ""), va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("records")
    ax.set_title(f"Cleaning funnel: {report.records_in} -> {report.records_out}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, max(left + [1]) * 1.25)
    top = max(report.lengths_before + report.lengths_after + [1])
    bins = [0] + [int(top ** (k / 30)) for k in range(1, 31)]
    bins = sorted(set(bins))
    ax2.hist(report.lengths_before, bins=bins, alpha=0.5, label=f"before ({len(report.lengths_before)})")
    ax2.hist(report.lengths_after, bins=bins, alpha=0.5, label=f"after ({len(report.lengths_after)})")
    if top > 100:
        ax2.set_xscale("symlog")
    ax2.set_xlabel("reply length (characters)")
    ax2.set_ylabel("records")
    ax2.set_title("Reply lengths")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        save(fig, path)  # whole or absent, and closed
    return fig


def write_report(report: CleanReport, report_dir: str | os.PathLike) -> dict[str, Path]:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": report_dir / "clean.md", "json": report_dir / "clean_counts.json",
             "png": report_dir / "clean_funnel.png"}
    atomic_write_json(paths["json"], report.counts())
    atomic_write(paths["md"], report.markdown() + "\n\n![funnel](clean_funnel.png)\n")
    plot_funnel(report, paths["png"])
    return paths
