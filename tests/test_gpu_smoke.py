"bench/gpu_smoke.py runs on CPU too (--quick), so the GPU smoke script cannot rot while no GPU is lent (issue 27)."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def test_gpu_smoke_quick_runs_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    r = subprocess.run([sys.executable, str(ROOT/"bench"/"gpu_smoke.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path/"gpu_smoke-cpu.json").read_text())
    status = {s["step"].split()[0]: s["status"] for s in doc["steps_run"]}
    assert doc["ok"] and set(status) == {"1", "2", "3a", "3b", "4", "5", "6", "7", "8", "9", "10"}
    assert all(status[k] == "ok" for k in ("1", "3a", "3b", "4", "5", "6", "7"))
    assert all(status[k] == "skipped" for k in ("9", "10"))   # CUDA-only, and they say so
    skipped = {s["step"].split()[0]: s["reason"] for s in doc["steps_run"] if s["status"] == "skipped"}
    assert "CUDA" in skipped["9"] and "CUDA" in skipped["10"]
    # the label mask the trainer sees does not depend on the machine: the committed CPU run's hash is this run's
    committed = json.loads((ROOT/"bench"/"results"/"gpu_smoke-cpu.json").read_text())
    assert doc["label_mask"]["sha256"] == committed["label_mask"]["sha256"]
    md = (tmp_path/"gpu_smoke-cpu.md").read_text()
    assert md.startswith("# GPU smoke: cpu") and "| 6 merge with logit parity | ok |" in md
