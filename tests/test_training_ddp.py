"""DDP: `torchrun --nproc_per_node=2 -m dleem train ...` on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_training import make_workspace

from dleem.models import load_model


def test_ddp_two_gloo_processes(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "m"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLEEM_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "dleem", "train", str(ws), "-o", str(out), "--steps", "4", "--preset", "tiny",
         "--patch", "8", "--batch", "2", "--device", "cpu", "--warmup", "0.5",
         "--checkpoint-every", "2"],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2 and cfg["training"]["steps_done"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_000000002.pt", "step_000000004.pt"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    m = load_model(out)
    assert m.scale == 4
