"""Answers from local checkpoints (batched generate), endpoints and premade files; cached and resumable."""
import pytest

from lib.budget import Ledger, load_budgets
from lib.core.errors import UserError
from lib.evaluate.answers import GenerationSettings, answer_table, generate_answers, parse_models
from lib.evaluate.questions import Question, QuestionSet
from lib.core.formats import ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, turns_to_messages
from lib.core.formats import render_prompt as render_messages


def render_prompt(tok, fmt, turns, answers):
    return render_messages(fmt, turns_to_messages(turns, answers), tok)

QS = QuestionSet("t", [Question("one", ["Name a fruit that is yellow."], category="generic"),
                       Question("two", ["What is 2 + 2?", "And times 3?"], category="math", reference=["4", "12"])],
                 premade={"oracle": {"one": ["A banana."], "two": ["4", "12"]}})


def test_prompt_formats(embedded_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    assert render_prompt(tok, "alpaca", ["Say hi."], []) == ALPACA_PROMPT_NO_INPUT.format(instruction="Say hi.")
    second = render_prompt(tok, "alpaca", ["Say hi.", "Louder."], ["hi"])
    assert second == ALPACA_PROMPT_INPUT.format(instruction="Louder.", input="Earlier request: Say hi.\nEarlier response: hi")
    chat = render_prompt(tok, "chat", ["Say hi.", "Louder."], ["hi"])
    assert chat.endswith("<|im_start|>assistant\n") and chat.count("<|im_start|>user") == 2 and "hi<|im_end|>" in chat
    vic = render_prompt(tok, "vicuna_v1.1", ["Say hi."], [])
    assert vic.endswith("ASSISTANT:") and "Say hi." in vic


def test_local_checkpoint_answers_are_cached_and_resumed(tmp_path, embedded_model):
    specs = parse_models({"base": "embedded", "alp": str(embedded_model), "oracle": "premade"}, {"alp": "alpaca"})
    path = tmp_path / "answers.jsonl"
    settings = GenerationSettings(max_new_tokens=8)
    store = generate_answers(specs, QS, path, settings)
    table = answer_table(store)
    assert set(table) == {"base", "alp", "oracle"}
    assert len(table["base"]["two"]) == 2 and len(table["base"]["one"]) == 1
    rec = store.get(("base", "two"))
    assert rec["prompt_format"] == "chat" and all(0 < n <= 8 for n in rec["tokens"]) and rec["fingerprint"]
    assert store.get(("alp", "one"))["prompt_format"] == "alpaca"
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    # Greedy decoding: the same prompt gives the same answer; a re-run adds nothing.
    store2 = generate_answers(specs, QS, path, settings)
    assert path.read_text().splitlines() == lines and answer_table(store2) == table
    # A lost line is regenerated, and only that one.
    kept = [ln for ln in lines if not ('"model": "base"' in ln and '"question_id": "one"' in ln)]
    assert len(kept) == 5
    path.write_text("\n".join(kept) + "\n")
    store3 = generate_answers(specs, QS, path, settings)
    assert len(path.read_text().splitlines()) == 6 and answer_table(store3)["base"]["one"] == table["base"]["one"]


def test_endpoint_answers_are_metered(tmp_path, local_endpoint):
    ledger = Ledger(tmp_path / "ledger", writer="evaluate", budgets=load_budgets())
    specs = parse_models({"served": f"endpoint:{local_endpoint.base_url}|{local_endpoint.model}"})
    qs = QuestionSet("t", QS.questions[:1])
    store = generate_answers(specs, qs, tmp_path / "answers.jsonl", GenerationSettings(max_new_tokens=8), ledger=ledger)
    assert store.get(("served", "one"))["turns"][0]
    api = ledger.records(kind="api", phase="evaluation")
    assert len(api) == 1 and api[0]["purpose"] == "answers:served" and api[0]["usd"] == 0.0


def test_billed_endpoint_answers_never_cross_a_tiny_evaluation_cap(tmp_path, local_endpoint, evaluation_capped):
    """Answers from a billed endpoint are reserved at their worst case before each call, as
    judge calls are: with room for one answer the run stops before crossing the cap."""
    from lib.budget.guard import worst_case_usd
    from lib.core.errors import BudgetExceeded

    # a local server charged as gpt-4o: the one billing rule (Endpoint.billed_as) bills it
    specs = parse_models({"paid": f"endpoint:{local_endpoint.base_url}|{local_endpoint.model}|OPENAI_API_KEY|gpt-4o"})
    qs = QuestionSet("t", [Question(f"q{i}", [f"Describe the colour number {i} of the rainbow. " * 20])
                           for i in range(4)])
    settings = GenerationSettings(max_new_tokens=8)
    worst = max(worst_case_usd("gpt-4o", [[{"role": "user", "content": q.turns[0]}]], 8) for q in qs.questions)
    cap = 1.2 * worst  # room for one answer and not much more
    ledger, guard = evaluation_capped(cap)
    with pytest.raises(BudgetExceeded):
        generate_answers(specs, qs, tmp_path / "answers.jsonl", settings, ledger=ledger, guard=guard)
    calls = ledger.records(kind="api", phase="evaluation")
    assert calls, "no answer fitted under the cap: the test exercised nothing"
    assert all(c["usd"] > 0 for c in calls)  # billed, as the price_model says
    assert len(calls) < len(qs.questions) and ledger.spent("evaluation") <= cap


@pytest.mark.parametrize("models,formats,fragment", [
    ({}, None, "must map names"),
    ({"tuned": "/no/such/model"}, None, "no Hugging Face checkpoint"),
    ({"base": "embedded"}, {"base": "llama2"}, "prompt format"),
    # one name per format (lib.core.formats): evaluation's old alias is refused, naming the one name
    ({"base": "embedded"}, {"base": "vicuna"}, r"model 'base': prompt format 'vicuna' is named 'vicuna_v1.1'"),
    ({"base": "embedded"}, {"other": "chat"}, "not in models"),
    ({"api": "endpoint:http://x/v1"}, None, "endpoint:<base_url>|<model>"),
])
def test_bad_model_specs(models, formats, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_models(models, formats)


def test_premade_must_cover_the_questions(tmp_path):
    specs = parse_models({"ghost": "premade"})
    with pytest.raises(UserError, match="no answers by that name"):
        generate_answers(specs, QS, tmp_path / "a.jsonl", GenerationSettings())
    assert parse_models({"x": "endpoint:http://h/v1|m|MY_KEY|gpt-4o"})[0].price_model == "gpt-4o"
