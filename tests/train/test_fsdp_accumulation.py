import os
import subprocess
import sys
from pathlib import Path


def test_fsdp_accumulation_with_unequal_packs():
    """Two FSDP2 processes doing 2 and 3 backward passes in one step finish (no collective mismatch) and end
    with the gradient of all sequences together. Without keeping parameters unsharded this hangs."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(Path(__file__).with_name("fsdp_worker.py"))]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 ok" in result.stdout and "rank 1 ok" in result.stdout
