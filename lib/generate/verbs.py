"""Root verb and its direct object of an instruction, offline (Alpaca's verb-noun chart).

Alpaca parsed each instruction with the Berkeley Neural Parser and plotted the root verb
and its first direct-object noun. No parser model can be downloaded here, so this is a
rule-based stand-in that relies on the shape of imperative instructions:

* skip politeness and modal openers ("please", "can you", "could you please", "I want you to");
* the verb is the first remaining word if it is in a list of ~200 verbs seen at the start of
  instructions (a closed list: "Generate", "Write", "Classify"...); questions ("What is...",
  "How do...") and statements have no verb and are left out, as in Alpaca's chart;
* the object is the head of the first noun phrase after the verb: skip determiners,
  numbers, pronoun objects ("me", "us") and adjectives we know, then read words up to the
  first preposition / conjunction / punctuation and take the last one ("a short *poem*
  about love", "three *tips* for staying healthy"), singularised for counting.

How good: on the English seed tasks shipped in lib/data and checked by hand (see
tests/test_generate_charts.py) the pair is right for the imperative instructions we
labelled; it errs on nouns used as verbs ("Plan" vs "plan"), on compound objects ("the
following sentence" -> "sentence", which is what Alpaca's chart shows too) and on objects
preceded by unknown adjectives ("a catchy headline" -> "headline" works because the head is
the last word before "for"; "a haiku poem" -> "poem"). It is a chart, not a parser.
"""
from __future__ import annotations

import re

VERBS = set("""
add adjust analyze brainstorm analyse answer apply arrange ask assess assign build calculate categorize categorise change check
choose cite classify clean combine compare compile complete compose compute condense construct convert correct count
create critique debug decide decode define delete describe design detect determine develop diagnose discuss distinguish
draft edit elaborate eliminate encode enumerate estimate evaluate examine explain explore express extract fill find fix
format formulate generate give guess help identify illustrate imagine improve include infer insert interpret introduce
invent judge justify label list locate make match measure mention merge modify name note offer order organize organise
outline paraphrase pick plan point predict prepare present produce propose provide punctuate put rank rate read
recommend reconstruct rearrange reduce refactor reformat rephrase replace report represent respond restate rewrite
reverse review revise rewrite say score select separate share shorten show simplify solve sort specify spell split
state suggest summarize summarise support swap tell test transform translate turn underline use verify write
""".split())
_OPENERS = [
    "please", "kindly", "can you", "could you", "would you", "will you", "can you please", "could you please",
    "i want you to", "i need you to", "i would like you to", "you need to", "you should", "now", "then", "also",
]
_DETERMINERS = set("""
a an the this that these those some any each every all both either neither my your our their his her its
me us him them it one two three four five six seven eight nine ten few several many more most another other
following given provided above below new short long simple brief good creative detailed
""".split())
# words that end a noun phrase
_STOP = set("""
about for of on in with to from into by as at that which who whom whose where when while if than and or but so
using based between without within through over under after before since because like such how what why
is are be sound seem look become up
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|[^\sA-Za-z]")


def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def verb_object(instruction: str) -> tuple[str, str] | None:
    """(verb, object) of an imperative instruction, lower-case; None when it is not one.

    The object is "" when the verb takes none we can find ("Explain briefly.").
    """
    words = [w.lower() for w in _WORD.findall(instruction)]
    text = " ".join(words)
    for opener in sorted(_OPENERS, key=len, reverse=True):
        if text.startswith(opener + " "):
            words = words[len(opener.split()):]
            break
    if words and words[0] == ",":
        words = words[1:]
    if not words or words[0] not in VERBS:
        return None
    verb = words[0]
    rest = words[1:]
    if rest[:1] == ["up"] or rest[:1] == ["out"]:  # phrasal verbs: "make up", "figure out"
        rest = rest[1:]
    phrase = []
    for w in rest:
        if not w[0].isalpha() or w in _STOP:
            if phrase:
                break
            if w in _STOP and w not in ("of",):
                break
            continue
        if not phrase and w in _DETERMINERS:
            continue
        if phrase and w.endswith(("ed", "ing")):  # "every date mentioned", "a tweet announcing"
            break
        phrase.append(w)
        if len(phrase) >= 4:
            break
    obj = _singular(phrase[-1]) if phrase else ""
    return verb, obj
