"""ShareGPT conversations: ChatGPT-page HTML to markdown, role order, splitting to the trainer's budget.

Vicuna's recipe for 70K ShareGPT conversations, rebuilt on maintained parts:

* `page_to_markdown`: ShareGPT scraped the ChatGPT web page, so replies are its HTML and
  turns carry page chrome. `markdownify` turns the HTML into the markdown the model should
  learn to write; code blocks are rebuilt from the DOM (see `_ChatGPTConverter.convert_pre`)
  so each survives byte for byte with its language; the regenerate counter ("2 / 2") and
  the "Copy N chars / N words" counter are removed. docs/fidelity.md compares the result
  with FastChat's `clean_sharegpt.py` on the same pages.
* `fix_roles`: a conversation must read human, gpt, human, gpt ... (after an optional
  system turn). Leading assistant turns are cut (the page started mid-conversation), an
  unanswered last human turn is cut; anything else out of order drops the conversation.
* `split_conversation`: the trainer sees at most `max_tokens` tokens of each piece *as it
  renders it* (BOS, system prompt, role tags, separators, EOS), so pieces are measured with
  the trainer's own encoder (`lib.core.masking.encode_record`), never with a per-turn
  estimate. Each piece starts with a human turn. An exchange that alone exceeds the budget
  is dropped (default; a cut-off answer followed by EOS teaches the model to stop
  mid-sentence) or, with long_turn="truncate", its answer is cut to fit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from markdownify import MarkdownConverter

from lib.clean.formats import sharegpt_to_alpaca
from lib.core.formats import check_format
from lib.core.masking import MaskingError, encode_record

_HTML_TAG = re.compile(
    r"</?(?:p|div|br|pre|code|ol|ul|li|h[1-6]|table|thead|tbody|tr|td|th|a|b|i|em|strong|span|blockquote|img|hr)"
    r"(?:\s[^<>]*)?/?>", re.IGNORECASE)
# The page's regenerate counter ("2 / 2" beside an edited prompt or a regenerated answer)
# was scraped glued to the turn's text: "2 / 2Write a poem", "1 / 2<div ...". A counter is
# only taken when the text follows without a space and it reads n / m with n <= m, so a
# question that opens with a fraction ("1 / 2 cup of flour is ...") is left alone.
_COUNTER = re.compile(r"\A\s*(\d{1,3}) / (\d{1,3})(?=[^\W\d_]|<|[\"'\u201c\u2018(\[])")
# A browser extension's counter above replies: "Copy1 chars / 1 words" (FastChat's pattern).
_COPY_CHARS = re.compile(r"[ \t]*Copy\d+ chars / \d+ words[ \t]*\n?")
# The same counter in an answer's page markup is its own element (`<div>1 / 2</div><div
# class="markdown">...`): after conversion it is the answer's whole first line.
_COUNTER_LINE = re.compile(r"\A\s*(\d{1,3}) / (\d{1,3})[ \t]*\n+")
_BACKTICK_LINE = re.compile(r"^[ \t]*(`{3,})", re.MULTILINE)


def looks_like_html(text: str) -> bool:
    return _HTML_TAG.search(text) is not None


def strip_page_noise(text: str) -> str:
    """A turn without the page's regenerate counter and word counter."""
    m = _COUNTER.match(text)
    if m and 1 <= int(m.group(1)) <= int(m.group(2)):
        text = text[m.end():]
    return _COPY_CHARS.sub("", text)


def _code_block(pre) -> tuple[str, str]:
    """(language, code) of a page's code block: the text the page's "Copy code" button copied.

    The ChatGPT page wrapped each block as <pre><div><div header><span>python</span><button>
    <svg/>Copy code</button></div><div><code class="hljs language-python"><span class="hljs-
    keyword">def</span> ...</code></div></div></pre>. The code is the <code> element's text
    (hljs spans unwrapped, entities decoded); the header is chrome. The language is the
    code's `language-*` class, else the header's label.
    """
    code = pre.find("code")
    for node in (code, pre):
        for cls in (node.get("class") or []) if node is not None else []:
            if cls.startswith("language-") and cls != "language-undefined":
                return cls[len("language-"):], _code_text(pre, code)
    header = next((b.parent for b in pre.find_all("button")
                   if code is None or all(p is not b.parent for p in code.parents)), None)
    label = "" if header is None else "".join(
        s for s in header.find_all(string=True) if s.find_parent("button") is None).strip()
    return label, _code_text(pre, code, header)


def _code_text(pre, code, header=None) -> str:
    if code is not None:
        return code.get_text()
    if header is None:
        header = next((b.parent for b in pre.find_all("button")), None)
    text = "".join(s for s in pre.find_all(string=True) if header is None or all(p is not header for p in s.parents))
    # HTML drops a newline that directly follows <pre>; html.parser keeps it.
    return text[1:] if text.startswith("\n") else text


class _ChatGPTConverter(MarkdownConverter):
    """markdownify, with code blocks taken verbatim from the DOM."""

    def convert_pre(self, el, text, parent_tags):
        # markdownify's own pre conversion would receive the header's text ("pythonCopy code")
        # as the first code line; stripping it afterwards left a blank first line.
        lang, code = _code_block(el)
        if not code.strip():
            return ""  # an empty block: only its "Copy code" header was left
        if not code.endswith("\n"):
            code += "\n"
        # A fence longer than any backtick run that opens a code line (markdown about markdown).
        longest = max((len(m) for m in _BACKTICK_LINE.findall(code)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"\n\n{fence}{lang}\n{code}{fence}\n\n"


_CONVERTER = _ChatGPTConverter(heading_style="ATX", bullets="-",
                               # Escaping _ and * would turn snake_case identifiers into snake\_case.
                               escape_underscores=False, escape_asterisks=False)


def html_to_markdown(text: str) -> str:
    """Markdown for an HTML reply; text without HTML tags comes back unchanged."""
    if not looks_like_html(text):
        return text
    return _CONVERTER.convert(text).strip()


def page_to_markdown(turn: dict) -> str:
    """A ShareGPT turn as the model should learn it: page noise off, an answer's HTML as markdown.

    Only answers are converted: a human turn is the text the user typed, and HTML the user
    pasted ("why does <div class='row'> not wrap?") is the question, not page markup.
    """
    text = strip_page_noise(turn["value"])
    if turn["from"] == "human" or not looks_like_html(text):
        return text
    md = html_to_markdown(text)
    m = _COUNTER_LINE.match(md)
    if m and 1 <= int(m.group(1)) <= int(m.group(2)):
        md = md[m.end():]
    return md


def fix_roles(conv: dict) -> tuple[dict | None, str]:
    """Return (conversation with roles in order, what was changed) or (None, why it was dropped)."""
    turns = list(conv["conversations"])
    system = []
    if turns and turns[0]["from"] == "system":
        system, turns = [turns[0]], turns[1:]
    changes = []
    lead = 0
    while lead < len(turns) and turns[lead]["from"] == "gpt":
        lead += 1
    if lead:
        changes.append(f"cut {lead} leading assistant turn(s)")
        turns = turns[lead:]
    if turns and turns[-1]["from"] == "human":
        changes.append("cut an unanswered last human turn")
        turns = turns[:-1]
    for k, turn in enumerate(turns):
        want = "human" if k % 2 == 0 else "gpt"
        if turn["from"] != want:
            return None, f"turn {k + len(system) + lead}: {turn['from']} where {want} was expected"
    if len(turns) < 2:
        return None, "no human -> gpt exchange"
    return {**conv, "conversations": system + turns}, "; ".join(changes)


@dataclass
class SplitStats:
    pieces: int = 0
    split_conversations: int = 0      # conversations that became more than one piece
    dropped_exchanges: int = 0        # exchanges longer than the budget alone (long_turn="drop")
    truncated_exchanges: int = 0      # ... whose answer was cut to fit (long_turn="truncate")
    unencodable_exchanges: int = 0    # exchanges the trainer's encoder rejects (reason in the report)
    max_piece_tokens: int = 0         # longest piece, as the trainer renders it


# No limit: a measurement must see the whole rendering, never the trainer's truncation.
_UNLIMITED = 1 << 40


class TrainerTokens:
    """Tokens the trainer makes of a record or conversation piece, from its own encoder.

    `lib.core.masking.encode_record` renders exactly what training renders for the
    recipe's prompt format: BOS, the system prompt (Vicuna's default or the template's,
    e.g. SmolLM2's), role tags, separators and the EOS after every answer, tokenized as
    training tokenizes it. A per-turn overhead misses the system prompt and merges at turn
    boundaries; this measure cannot. In the Alpaca format every exchange of a conversation
    is its own training record (`sharegpt_to_alpaca`), so a piece costs its longest exchange.
    """

    def __init__(self, tokenizer, fmt: str):
        self.tok, self.fmt = tokenizer, check_format(fmt)
        self.last_error = ""
        self._shared: dict[str | None, int] = {}

    def shared_tokens(self, system: list[dict]) -> int:
        """What a piece renders once however many exchanges it holds (BOS, system prompt):
        one exchange rendered twice costs twice its tokens less this. Used only to plan
        pieces; every piece is then measured whole."""
        key = system[0]["value"] if system else None
        if key not in self._shared:
            ex = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
            one, two = self({"conversations": system + ex}), self({"conversations": system + ex + ex})
            self._shared[key] = 0 if one is None or two is None else max(0, 2 * one - two)
        return self._shared[key]

    def __call__(self, record: dict) -> int | None:
        """The rendered length, or None when the trainer cannot encode it (reason in last_error)."""
        if self.fmt == "alpaca" and "conversations" in record:
            counts = [self(r) for r in sharegpt_to_alpaca({"id": "", **record})]
            return None if not counts or None in counts else max(counts)
        try:
            ex, _ = encode_record(record, self.tok, self.fmt, _UNLIMITED)
        except MaskingError as e:
            self.last_error = str(e)
            return None
        return len(ex["input_ids"])


def split_conversation(conv: dict, measure: TrainerTokens, max_tokens: int, long_turn: str = "drop",
                       stats: SplitStats | None = None) -> list[dict]:
    """Pieces of a role-ordered conversation, each <= max_tokens as rendered for training.

    Each piece starts with a human turn. The system turn, if any, opens every piece (and
    counts against each piece's budget): it states how the assistant should behave, which
    holds for every part.

    Every exchange is measured once, rendered alone with the system turn; pieces grow
    greedily on those counts less what each piece renders once (BOS, system prompt), and
    each finished piece is measured whole before it is kept: when turns merge across a
    boundary so that it overflows, it gives back exchanges until it fits. So the budget is
    checked on the exact rendering, with one encoding per exchange and one per piece.
    """
    stats = stats if stats is not None else SplitStats()
    turns = conv["conversations"]
    system = [turns[0]] if turns and turns[0]["from"] == "system" else []
    body = turns[len(system):]
    exchanges = [body[k:k + 2] for k in range(0, len(body) - 1, 2)]
    pieces: list[list[dict]] = []

    def tokens(exs: list[list[dict]]) -> int | None:
        return measure({"conversations": system + [t for ex in exs for t in ex]})

    alone = [tokens([ex]) for ex in exchanges]
    shared = measure.shared_tokens(system) if len(exchanges) > 1 else 0
    run: list[tuple[list[dict], int]] = []  # (exchange, its tokens alone) of the piece being built
    estimate = 0

    def whole(part) -> int | None:
        return part[0][1] if len(part) == 1 else tokens([ex for ex, _ in part])

    def flush():
        nonlocal run
        while run:
            k, n = len(run), whole(run)
            while k > 1 and (n is None or n > max_tokens):
                k -= 1
                n = whole(run[:k])
            pieces.append(system + [t for ex, _ in run[:k] for t in ex])
            stats.max_piece_tokens = max(stats.max_piece_tokens, n)
            run = run[k:]

    for ex, n in zip(exchanges, alone):
        if n is None:
            stats.unencodable_exchanges += 1
            flush()
            continue
        if n > max_tokens:
            flush()  # an exchange that is left out ends the context of the piece before it
            cut = _truncated(ex, tokens, max_tokens, measure.tok) if long_turn == "truncate" else None
            if cut is None:
                stats.dropped_exchanges += 1
                continue
            run = [cut]
            stats.truncated_exchanges += 1
            flush()
            continue
        grown = max(estimate, n) if measure.fmt == "alpaca" else estimate + n - shared
        if run and grown <= max_tokens:
            run.append((ex, n))
            estimate = grown
            continue
        flush()
        run, estimate = [(ex, n)], n
    flush()
    if len(pieces) > 1:
        stats.split_conversations += 1
    stats.pieces += len(pieces)
    if len(pieces) == 1:
        return [{**conv, "conversations": pieces[0]}]
    return [{**conv, "id": f"{conv['id']}_{n}", "conversations": p} for n, p in enumerate(pieces)]


def _truncated(exchange: list[dict], tokens, max_tokens: int, tok) -> tuple[list[dict], int] | None:
    """The exchange with its answer cut to the longest token prefix whose rendering fits."""
    human, gpt = exchange
    ids = tok(gpt["value"], add_special_tokens=False)["input_ids"]

    def attempt(n: int):
        text = tok.decode(ids[:n], skip_special_tokens=True)
        if not text.strip():
            return None
        cand = [human, {**gpt, "value": text}]
        got = tokens([cand])
        return (cand, got) if got is not None and got <= max_tokens else None

    lo, hi, best = 1, len(ids) - 1, None
    while lo <= hi:  # the rendered length grows with the answer's prefix: binary search
        mid = (lo + hi) // 2
        got = attempt(mid)
        if got is not None:
            best, lo = got, mid + 1
        else:
            hi = mid - 1
    return best
