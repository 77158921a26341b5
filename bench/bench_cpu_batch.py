"""Peak memory of cpu-tier LoRA training by batch size: the source of `plan.CPU_BASE_GB` / `plan.CPU_ROW_GB`, which
`preflight()` uses to pick the CPU batch from the memory a machine (or its cgroup) allows.

Each batch size runs in its own subprocess (max RSS is per process): 2 optimizer steps of `train_sft` on the chapter's ticket
data, batch b x accumulation 1. Prints peak GB per batch, the least-squares line peak = base + per_row x b, and the constants
the library uses, so a drift shows as a ratio. Memory, not speed: contention from other work does not change it much.

    python bench/bench_cpu_batch.py [--batches 1 4 16]
"""
import argparse, json, subprocess, sys

CHILD = """
import json, sys
from playbook_lib.train import TrainConfig, train_sft
b = int(sys.argv[1])
cfg = TrainConfig(model="cpu", method="lora", max_steps=2, batch_size=b, grad_accum=1, eval_steps=0, save_steps=0,
                  n_train=2*b, output_dir=sys.argv[2])
r = train_sft(cfg, "train", progress=False, fresh=True)
print(json.dumps(dict(batch=b, peak_gb=r.peak_mem_gb, tokens_per_s=r.tokens_per_s)))
"""

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16]); a = ap.parse_args()
    import tempfile
    from playbook_lib.plan import CPU_BASE_GB, CPU_ROW_GB
    rows = []
    for b in a.batches:
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([sys.executable, "-c", CHILD, str(b), d], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1])); print(f"batch {b:>3}: peak {rows[-1]['peak_gb']:.2f} GB")
    n, xs, ys = len(rows), [r["batch"] for r in rows], [r["peak_gb"] for r in rows]
    mx, my = sum(xs)/n, sum(ys)/n
    slope = sum((x - mx)*(y - my) for x, y in zip(xs, ys))/max(sum((x - mx)**2 for x in xs), 1e-9)
    base = my - slope*mx
    print(f"fit: peak = {base:.2f} + {slope:.3f} x batch GB;  library: {CPU_BASE_GB} + {CPU_ROW_GB} x batch")
    for r in rows:
        lib = CPU_BASE_GB + CPU_ROW_GB*r["batch"]
        print(f"batch {r['batch']:>3}: library / measured = {lib/r['peak_gb']:.2f}")

if __name__ == "__main__": main()
