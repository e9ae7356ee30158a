"""Evaluation (04_evaluate): answers from any number of models, LLM judging with bias
controls, win rates with intervals, reference metrics, costs.

    questions.py  question sets (own, Vicuna-80, MT-bench, Self-Instruct 252, AlpacaEval)
    answers.py    answers from local checkpoints, endpoints or premade files; cached, resumable
    prompts.py    the judge prompts (Vicuna pairwise, MT-bench single, reference-guided)
    parse.py      reading scores out of judge replies
    judge.py      pairwise (both orders) and single grading; append-only judgments
    stats.py      swap rule, win rates, bootstrap intervals, length control, order bias
    metrics.py    ROUGE-L (language-aware) and reference perplexity
    results.py    results.json
    charts.py     the pictures
    store.py      append-only JSONL keyed stores

07_review (people beside the judge):
    review.py     blind pairwise review: the queue, votes in eval/human.jsonl, the ipywidgets view
    agreement.py  judge vs people and people vs people (raw, non-tie, kappa), cost of trust
    ratings.py    Bradley-Terry / Elo ratings across many models, with intervals
    scorecard.py  the run beside published results (lib/data/published_results.yaml), or why not
"""
