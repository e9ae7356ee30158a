"""ShareGPT conversations: HTML to markdown, role order, splitting to a token budget.

Vicuna's recipe for 70K ShareGPT conversations, rebuilt on maintained parts:

* `html_to_markdown`: the ChatGPT web page stored replies as HTML; `markdownify` turns it
  into the markdown the model should learn to write (code fences keep their language).
* `fix_roles`: a conversation must read human, gpt, human, gpt ... (after an optional
  system turn). Leading assistant turns are cut (the page started mid-conversation), an
  unanswered last human turn is cut; anything else out of order drops the conversation.
* `split_conversation`: the trainer sees at most `max_tokens` tokens, *counted with the
  training tokenizer*, so a long conversation becomes several pieces, each starting with a
  human turn and each within the budget. An exchange that alone exceeds the budget is
  dropped (default; a cut-off answer followed by EOS teaches the model to stop
  mid-sentence) or, with long_turn="truncate", its answer is cut to fit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_HTML_TAG = re.compile(
    r"</?(?:p|div|br|pre|code|ol|ul|li|h[1-6]|table|thead|tbody|tr|td|th|a|b|i|em|strong|span|blockquote|img|hr)"
    r"(?:\s[^<>]*)?/?>", re.IGNORECASE)
# The ChatGPT page put a "Copy code" button (and the language name) above every code block.
_COPY_CODE = re.compile(r"^[ \t]*[\w+#.-]*\s*Copy code[ \t]*\n", re.MULTILINE)
_FENCE_GAP = re.compile(r"^(```[\w+#.-]*)\n[ \t]*\n", re.MULTILINE)


def looks_like_html(text: str) -> bool:
    return _HTML_TAG.search(text) is not None


def _code_language(el) -> str:
    for node in [el, *el.find_all("code")]:
        for cls in node.get("class") or []:
            if cls.startswith("language-"):
                return cls[len("language-"):]
    return ""


def html_to_markdown(text: str) -> str:
    """Markdown for an HTML reply; text without HTML tags comes back unchanged."""
    if not looks_like_html(text):
        return text
    from markdownify import markdownify

    md = markdownify(text, heading_style="ATX", bullets="-", code_language_callback=_code_language,
                     # Escaping _ and * would turn snake_case identifiers into snake\_case.
                     escape_underscores=False, escape_asterisks=False)
    md = _COPY_CODE.sub("", md)
    md = _FENCE_GAP.sub(r"\1\n", md)  # the removed button line leaves a blank line after the fence
    return re.sub(r"\n{3,}", "\n\n", md).strip()


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
    max_piece_tokens: int = 0


class TokenCounter:
    """Token lengths of turn texts with the training tokenizer, cached (turns repeat)."""

    def __init__(self, tokenizer, overhead: int):
        self.tok = tokenizer
        self.overhead = overhead
        self._cache: dict[str, int] = {}

    def prime(self, texts: list[str]) -> None:
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for k in range(0, len(new), 1024):  # a batch is one Rust call for a fast tokenizer
            batch = new[k:k + 1024]
            for text, ids in zip(batch, self.tok(batch, add_special_tokens=False)["input_ids"]):
                self._cache[text] = len(ids)

    def text(self, text: str) -> int:
        if text not in self._cache:
            self._cache[text] = len(self.tok(text, add_special_tokens=False)["input_ids"])
        return self._cache[text]

    def turn(self, turn: dict) -> int:
        return self.text(turn["value"]) + self.overhead

    def truncate(self, text: str, limit: int) -> str:
        """The longest prefix of `text` (in tokens) that counts at most `limit` tokens."""
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        n = limit
        while n > 0:
            cut = self.tok.decode(ids[:n], skip_special_tokens=True)
            if self.text(cut) <= limit:  # decode/encode may not round-trip exactly
                return cut
            n -= 1
        return ""


def split_conversation(conv: dict, counter: TokenCounter, max_tokens: int, long_turn: str = "drop",
                       stats: SplitStats | None = None) -> list[dict]:
    """Pieces of a role-ordered conversation, each <= max_tokens and starting with a human turn.

    The system turn, if any, opens every piece (and counts against each piece's budget):
    it states how the assistant should behave, which holds for every part.
    """
    stats = stats if stats is not None else SplitStats()
    turns = conv["conversations"]
    system = [turns[0]] if turns and turns[0]["from"] == "system" else []
    body = turns[len(system):]
    base = sum(counter.turn(t) for t in system)
    pieces: list[list[dict]] = []
    cur: list[dict] = []
    cur_cost = base

    def flush():
        nonlocal cur, cur_cost
        if cur:
            pieces.append(system + cur)
            stats.max_piece_tokens = max(stats.max_piece_tokens, cur_cost)
        cur, cur_cost = [], base

    for k in range(0, len(body) - 1, 2):
        human, gpt = body[k], body[k + 1]
        cost = counter.turn(human) + counter.turn(gpt)
        if base + cost > max_tokens:
            flush()
            room = max_tokens - base - counter.turn(human) - counter.overhead
            if long_turn == "truncate" and room >= 1:
                cut = counter.truncate(gpt["value"], room)
                if cut.strip():
                    cur = [human, {**gpt, "value": cut}]
                    cur_cost = base + counter.turn(human) + counter.turn(cur[1])
                    stats.truncated_exchanges += 1
                    flush()
                    continue
            stats.dropped_exchanges += 1
            continue
        if cur_cost + cost > max_tokens:
            flush()
        cur += [human, gpt]
        cur_cost += cost
    flush()
    if len(pieces) > 1:
        stats.split_conversations += 1
    stats.pieces += len(pieces)
    if len(pieces) == 1:
        return [{**conv, "conversations": pieces[0]}]
    return [{**conv, "id": f"{conv['id']}_{n}", "conversations": p} for n, p in enumerate(pieces)]


def piece_tokens(conv: dict, counter: TokenCounter) -> int:
    return sum(counter.turn(t) for t in conv["conversations"])


def alpaca_token_counts(recs: list[dict], tokenizer) -> list[int]:
    """Tokens the trainer sees per Alpaca record: its exact prompt template + reply + EOS."""
    from lib.train.templates import alpaca_prompt

    texts = [alpaca_prompt(r["instruction"], r.get("input", "")) + r["output"] for r in recs]
    out: list[int] = []
    for k in range(0, len(texts), 1024):
        out += [len(ids) + 1 for ids in tokenizer(texts[k:k + 1024], add_special_tokens=False)["input_ids"]]
    return out
