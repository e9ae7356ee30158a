"""The cleaning step end to end: read -> filters in funnel order -> write data and report.

    from lib.clean import CleanConfig, clean_file, write_outputs
    result = clean_file("runs/dev/data/generated.jsonl", CleanConfig(languages=("en", "zh")))
    write_outputs(result, "runs/dev")

or from a shell:

    python -m lib.clean.pipeline runs/dev/data/generated.jsonl --run-dir runs/dev [--on-error report]

Funnel order, cheap and certain first, so the costly near-duplicate search sees fewer
records: malformed -> role order (ShareGPT) -> HTML to markdown -> empty/short -> refusal
-> teacher identity -> language -> exact duplicate -> low-diversity source ->
near-duplicate -> token budget. Low diversity is measured before near-duplicates are
removed, because removing them is what would hide it. Every stage counts what it dropped
and keeps examples; all dropped records go to `data/clean_dropped.jsonl` with the reason.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from lib.clean import filters as F
from lib.clean.formats import Malformed, read_records, sharegpt_to_alpaca, write_dataset
from lib.clean.refusals import PhraseMatcher
from lib.clean.report import CleanReport, Stage, example, write_report
from lib.clean.sharegpt import (SplitStats, TrainerTokens, fix_roles, html_to_markdown, looks_like_html,
                                page_to_markdown, split_conversation)
from lib.core.errors import UserError, cli
from lib.core.files import atomic_write_jsonl
from lib.core.model import checked_tokenizer, resolve_model

STAGES = [  # (name, label, config switch)
    ("malformed", "malformed record", None),
    ("roles", "bad role order", "fix_roles"),
    ("html", "HTML -> markdown", "html_to_markdown"),
    ("short", "empty / too short", "drop_short"),
    ("refusal", "refusal / AI disclaimer", "drop_refusals"),
    ("identity", "names the teacher", "drop_identity"),
    ("language", "wrong language", "drop_wrong_language"),
    ("exact_duplicate", "exact duplicate", "drop_exact_duplicates"),
    ("low_diversity_source", "low-diversity source", "drop_low_diversity_sources"),
    ("near_duplicate", "near-duplicate", "drop_near_duplicates"),
    ("token_budget", "over token budget", "max_tokens"),
]


@dataclass
class CleanResult:
    records: list[dict]                 # kept records in the input's format (ShareGPT: split pieces)
    format: str
    report: CleanReport
    dropped: list[dict] = field(default_factory=list)  # {"stage", "detail", "record"}

    def alpaca(self) -> list[dict]:
        """The kept records as Alpaca (ShareGPT exchanges become one record each)."""
        if self.format == "alpaca":
            return self.records
        return [a for conv in self.records for a in sharegpt_to_alpaca(conv)]


def load_tokenizer(name: str):
    """The training tokenizer: "embedded" (SmolLM2), a checkpoint directory or a hub id."""
    try:
        return checked_tokenizer(resolve_model(name), "pass the path of the checkpoint you will train")
    except OSError as e:
        raise UserError(f"cannot load the tokenizer {name!r} ({e.__class__.__name__}): pass tokenizer='embedded' "
                        "or the path of the checkpoint you will train") from None


class _Funnel:
    """Applies one stage at a time, keeping counts, examples and the dropped records."""

    def __init__(self, recs: list[dict], cfg: F.CleanConfig, report: CleanReport):
        self.recs, self.cfg, self.report = recs, cfg, report
        self.dropped: list[dict] = []

    def stage(self, name: str) -> Stage:
        _, label, switch = next(s for s in STAGES if s[0] == name)
        enabled = True if switch is None else bool(getattr(self.cfg, switch))
        st = Stage(name=name, label=label, enabled=enabled, records_in=len(self.recs), records_out=len(self.recs))
        self.report.stages.append(st)
        return st

    def drop(self, st: Stage, drops: dict[int, str]) -> None:
        keep = []
        for i, rec in enumerate(self.recs):
            detail = drops.get(i)
            if detail is None:
                keep.append(rec)
                continue
            self.dropped.append({"stage": st.name, "detail": detail, "record": rec})
            if len(st.examples) < self.cfg.examples_per_filter:
                st.examples.append(example(rec, detail, F.prompt_text(rec), F.response_text(rec)))
        st.dropped = len(self.recs) - len(keep)
        st.records_out = len(keep)
        self.recs = keep


@dataclass
class _Run:
    """What the stages share besides the funnel: the input's format, the reader's rejects, the
    training tokenizer, the phrase matcher and the MinHash index both duplicate stages use."""

    fmt: str
    malformed: list
    tokenizer: object
    matcher: PhraseMatcher
    index: object = None
    diversity: dict = field(default_factory=dict)


def clean_records(records: list[dict], cfg: F.CleanConfig, *, fmt: str = "alpaca",
                  malformed: list[Malformed] = (), tokenizer=None, input_name: str = "",
                  progress: bool = True) -> CleanResult:
    """Run every stage on already-parsed records (see `clean_file` for reading a file)."""
    t0 = time.perf_counter()
    if cfg.max_tokens and tokenizer is None:
        raise UserError("max_tokens is set but no tokenizer was given: pass the training tokenizer "
                        "(tokenizer='embedded' in the notebook) or set max_tokens=0")
    report = CleanReport(format=fmt, input=input_name, records_in=len(records) + len(malformed),
                         config=asdict(cfg))
    report.lengths_before = [len(F.response_text(r)) for r in records]
    fun = _Funnel(list(records), cfg, report)
    run = _Run(fmt, list(malformed), tokenizer, PhraseMatcher(cfg.extra_refusal_phrases, cfg.identity_terms))
    with tqdm(total=len(STAGES), desc="clean", unit="stage", disable=not progress, leave=True) as bar:
        for name, *_ in STAGES:
            bar.set_postfix_str(f"{name} ({len(fun.recs)} records)")
            started = time.perf_counter()
            st = fun.stage(name)
            STAGE_STEPS[name](fun, st, cfg, run, progress)
            st.seconds = time.perf_counter() - started  # a stage's time: its own work only
            bar.update()
    _count_sources(records, fun.recs, run.diversity, report)
    result = CleanResult(records=fun.recs, format=fmt, report=report, dropped=fun.dropped)
    report.records_out = len(fun.recs)
    report.lengths_after = [len(F.response_text(r)) for r in fun.recs]
    report.output_records_alpaca = len(result.alpaca())
    report.seconds = time.perf_counter() - t0
    return result


def _count_sources(before: list[dict], after: list[dict], diversity: dict, report: CleanReport) -> None:
    src_in = Counter(r.get("source") or "" for r in before)
    src_out = Counter(r.get("source") or "" for r in after)
    for src, n in src_in.items():
        report.sources[src] = {"in": n, "out": src_out.get(src, 0)}
        if src in diversity:
            report.sources[src]["near_dup_share"] = round(diversity[src]["near_dup_share"], 4)


# ------------------------------------------------------------------------------ stages, in funnel order
# Each step gets the funnel, its Stage (counts, note), the config, the run's shared state and
# whether to show progress; a switched-off stage still appears in the funnel with its counts.

def _malformed(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    # already dropped by the reader, counted here so the funnel starts at the file
    st.records_in = fun.report.records_in
    st.dropped = len(run.malformed)
    fun.report.malformed = [asdict(m) for m in run.malformed]
    st.examples = [{"id": m.where(), "detail": m.error, "prompt": m.text[:160], "reply": ""}
                   for m in run.malformed[: cfg.examples_per_filter]]


def _roles(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if run.fmt == "alpaca":
        st.enabled, st.note = False, "ShareGPT only"
        return
    if not (run.fmt == "sharegpt" and cfg.fix_roles):
        return
    drops, ordered = {}, []
    for i, conv in enumerate(fun.recs):
        new, why = fix_roles(conv)
        if new is None:
            drops[i] = why
            ordered.append(conv)  # dropped as it came, so the report shows the original
        else:
            st.changed += bool(why)
            ordered.append(new)
    fun.recs = ordered
    fun.drop(st, drops)
    st.note = "changed = leading assistant / trailing human turns cut"


def _html(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.html_to_markdown:
        fun.recs = [_to_markdown(r, st) for r in fun.recs]
        st.note = "converted, not dropped"


def _short(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.drop_short:
        fun.drop(st, F.short_outputs(fun.recs, cfg.min_output_chars))
        st.note = f"min {cfg.min_output_chars} chars"


def _refusal(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.drop_refusals:
        fun.drop(st, F.refusals(fun.recs, run.matcher))


def _identity(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.drop_identity:
        fun.drop(st, F.identity_mentions(fun.recs, run.matcher))


def _language(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if not cfg.drop_wrong_language:
        return
    drops, detected = F.wrong_language(fun.recs, cfg)
    for i, code in detected.items():  # fill missing labels; never overwrite a given one
        if i not in drops and not fun.recs[i].get("lang"):
            fun.recs[i] = {**fun.recs[i], "lang": code}
            st.changed += 1
    fun.drop(st, drops)
    st.note = f"keep {','.join(cfg.languages)}; changed = lang label filled"


def _exact_duplicate(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.drop_exact_duplicates:
        fun.drop(st, F.exact_duplicates(fun.recs, cfg.dedup_on))


def _low_diversity_source(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    # The MinHash signatures are built here (and timed here), shared by both near-duplicate stages.
    if cfg.drop_low_diversity_sources or cfg.drop_near_duplicates:
        with tqdm(total=len(fun.recs), desc="minhash", unit="rec", disable=not progress, leave=False) as mb:
            run.index = F.MinHashIndex.build(fun.recs, cfg, progress=mb)
    if not cfg.drop_low_diversity_sources:
        return
    report = fun.report
    run.diversity = F.source_diversity(fun.recs, run.index, cfg)
    drops, report.dropped_sources, report.flagged_sources = F.low_diversity_sources(fun.recs, run.diversity, cfg)
    kept_idx = [i for i in range(len(fun.recs)) if i not in drops]
    fun.drop(st, drops)
    run.index = run.index.subset(kept_idx)
    st.note = f"share > {cfg.low_diversity_max_share:.0%} of >= {cfg.low_diversity_min_records} records"
    if report.flagged_sources:
        st.note += f"; flagged, kept: {', '.join(s or '(none)' for s in report.flagged_sources)}"


def _near_duplicate(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if cfg.drop_near_duplicates:
        fun.drop(st, F.near_duplicates(fun.recs, run.index, cfg))
        st.note = f"Jaccard >= {cfg.near_dup_threshold}"


def _token_budget(fun: _Funnel, st: Stage, cfg: F.CleanConfig, run: _Run, progress: bool) -> None:
    if not cfg.max_tokens:
        return
    if run.fmt == "sharegpt":
        _split(fun, st, cfg, run.tokenizer, fun.report)
        return
    measure = TrainerTokens(run.tokenizer, cfg.prompt_format)
    drops = {}
    for i, rec in enumerate(fun.recs):
        n = measure(rec)
        if n is None:
            drops[i] = f"the trainer cannot encode it: {measure.last_error}"
        elif n > cfg.max_tokens:
            drops[i] = f"{n} tokens > {cfg.max_tokens}"
    fun.drop(st, drops)
    st.note = f"<= {cfg.max_tokens} tokens as the trainer renders them ({cfg.prompt_format})"


STAGE_STEPS = {"malformed": _malformed, "roles": _roles, "html": _html, "short": _short, "refusal": _refusal,
               "identity": _identity, "language": _language, "exact_duplicate": _exact_duplicate,
               "low_diversity_source": _low_diversity_source, "near_duplicate": _near_duplicate,
               "token_budget": _token_budget}
assert list(STAGE_STEPS) == [s[0] for s in STAGES], "one step per stage, in funnel order"


def _to_markdown(rec: dict, st: Stage) -> dict:
    if "conversations" in rec:
        turns = [{**t, "value": page_to_markdown(t)} for t in rec["conversations"]]
        if all(new["value"] == t["value"] for new, t in zip(turns, rec["conversations"])):
            return rec
        st.changed += 1
        return {**rec, "conversations": turns}
    if not any(looks_like_html(rec[k]) for k in ("instruction", "input", "output")):
        return rec
    st.changed += 1
    return {**rec, **{k: html_to_markdown(rec[k]) for k in ("instruction", "input", "output")}}


def _split(fun: _Funnel, st: Stage, cfg: F.CleanConfig, tokenizer, report: CleanReport) -> None:
    measure = TrainerTokens(tokenizer, cfg.prompt_format)
    stats = SplitStats()
    pieces, drops = [], {}
    for i, conv in enumerate(fun.recs):
        if not cfg.fix_roles:  # splitting needs human/gpt pairs; check here when fix_roles is off
            ordered, why = fix_roles(conv)
            if ordered is None or why:
                drops[i] = f"cannot split: {why or 'roles out of order'}"
                continue
        before = stats.dropped_exchanges + stats.truncated_exchanges + stats.unencodable_exchanges
        unencodable = stats.unencodable_exchanges
        got = split_conversation(conv, measure, cfg.max_tokens, cfg.long_turn, stats)
        if not got:
            drops[i] = (f"the trainer cannot encode it: {measure.last_error}" if stats.unencodable_exchanges > unencodable
                        else f"every exchange is longer than {cfg.max_tokens} tokens")
            continue
        if len(got) > 1 or stats.dropped_exchanges + stats.truncated_exchanges + stats.unencodable_exchanges > before:
            st.changed += 1
        pieces.append((i, got))
    fun.drop(st, drops)
    fun.recs = [p for _, got in pieces for p in got]
    st.records_out = len(fun.recs)
    st.note = (f"<= {cfg.max_tokens} tokens as the trainer renders them ({cfg.prompt_format}): "
               f"{stats.split_conversations} split into pieces, {stats.dropped_exchanges} over-long exchanges dropped, "
               f"{stats.truncated_exchanges} truncated, {stats.unencodable_exchanges} unencodable; out counts pieces")
    report.split = {"max_tokens": cfg.max_tokens, "prompt_format": cfg.prompt_format,
                    "long_turn": cfg.long_turn, **asdict(stats)}


def clean_file(path, cfg: F.CleanConfig, *, tokenizer=None, progress: bool = True) -> CleanResult:
    """Read `path` (JSON, JSONL or a datasets folder) and clean it."""
    records, malformed, fmt = read_records(path, cfg.format, on_error=cfg.on_error)
    return clean_records(records, cfg, fmt=fmt, malformed=malformed, tokenizer=tokenizer,
                         input_name=str(path), progress=progress)


def write_outputs(result: CleanResult, run_dir) -> dict[str, Path]:
    """Write the cleaned data and the report into the run (every file atomically).

    data/clean.jsonl               Alpaca records for the trainer
    data/clean_dataset/            the same as a `datasets` dataset (save_to_disk)
    data/clean_conversations.jsonl ShareGPT pieces (ShareGPT input only), for chat training
    data/clean_dropped.jsonl       every dropped record with its stage and reason
    report/clean.md, clean_counts.json, clean_funnel.png
    """
    run_dir = Path(run_dir)
    data = run_dir / "data"
    alpaca = result.alpaca()
    paths = {"clean": data / "clean.jsonl", "dataset": data / "clean_dataset", "dropped": data / "clean_dropped.jsonl"}
    atomic_write_jsonl(paths["dropped"], result.dropped)
    if result.format == "sharegpt":
        paths["conversations"] = data / "clean_conversations.jsonl"
        atomic_write_jsonl(paths["conversations"], result.records)
    write_dataset(paths["dataset"], alpaca, "alpaca")
    paths.update(write_report(result.report, run_dir / "report"))
    # The trainer's input goes last: when it exists, everything it summarises exists too.
    atomic_write_jsonl(paths["clean"], alpaca)
    return paths


def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="clean Alpaca / ShareGPT data and write the report")
    ap.add_argument("input")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--format", default="auto")
    ap.add_argument("--on-error", default="raise")
    ap.add_argument("--languages", default="en,zh")
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--tokenizer", default="embedded")
    ap.add_argument("--prompt-format", default="alpaca", help="the recipe's format, that max-tokens is measured on")
    args = ap.parse_args(argv)
    cfg = F.CleanConfig(format=args.format, on_error=args.on_error, languages=args.languages, max_tokens=args.max_tokens,
                        prompt_format=args.prompt_format)
    tok = load_tokenizer(args.tokenizer) if args.max_tokens else None
    result = clean_file(args.input, cfg, tokenizer=tok)
    paths = write_outputs(result, args.run_dir)
    print(result.report.table())
    print(f"wrote {paths['clean']} ({result.report.output_records_alpaca} records) and {paths['md']}")


if __name__ == "__main__":
    cli(_main)()
