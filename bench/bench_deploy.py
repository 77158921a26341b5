"""Deployment benchmark (cpu tier): decode speed of base vs unmerged adapter vs merged, merge time, peak memory.

Run: flock /tmp/playbook-cpu.lock python bench/bench_deploy.py [--adapter DIR] [--rounds 5] [--new-tokens 64]
All ratios come from one run: the three models are measured in interleaved rounds so machine noise hits them alike.
"""
import argparse, gc, json, resource, statistics, tempfile, threading, time
from pathlib import Path

import psutil, torch

from playbook_lib.merge import decode_tokens_per_s, merge_adapter, random_lora_adapter
from playbook_lib.models import cache_root, load_base
from playbook_lib.train import load_adapter


class PeakRSS:
    "Sample this process's RSS in a thread; .peak is the maximum seen (bytes)."
    def __init__(self, every=0.05): self.every, self.peak, self._stop = every, 0, threading.Event()
    def __enter__(self):
        self.proc = psutil.Process(); self.peak = self.proc.memory_info().rss
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss); time.sleep(self.every)
    def __exit__(self, *a): self._stop.set(); self.t.join()


def _by_steps(p):
    "Longest-trained chapter-5 graduate first (specialist-cpu-qlora-60 before -2, which the IN_TEST run leaves)."
    n = p.name.rsplit("-", 1)[1]
    return -int(n) if n.isdigit() else 0

def pick_adapter(arg, work):
    for c in ([Path(arg)] if arg else []) + sorted(cache_root().glob("specialist-cpu-qlora-*"), key=_by_steps) + [cache_root()/"specialist-cpu"]:
        if (c/"adapter_model.safetensors").exists(): return c
    return random_lora_adapter(load_base("cpu")[0], work/"random-adapter", r=16)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--adapter"); p.add_argument("--rounds", type=int, default=5); p.add_argument("--new-tokens", type=int, default=64)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    adapter = pick_adapter(a.adapter, work)
    rss0 = psutil.Process().memory_info().rss

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        rep = merge_adapter("cpu", adapter, work/"merged", strategy="original16")
        merge_s = time.perf_counter() - t0
    gc.collect()

    base, tok = load_base("cpu")
    unmerged = load_adapter(load_base("cpu")[0], adapter).eval()
    merged = load_base(str(work/"merged"))[0]
    models = {"base": base, "unmerged": unmerged, "merged": merged}
    speeds = {k: [] for k in models}
    for _ in range(a.rounds):  # interleaved rounds
        for k, m in models.items(): speeds[k].append(decode_tokens_per_s(m, tok, new_tokens=a.new_tokens, repeats=1))
    med = {k: statistics.median(v) for k, v in speeds.items()}

    res = dict(adapter=adapter.name, threads=torch.get_num_threads(), rounds=a.rounds, new_tokens=a.new_tokens,
               tokens_per_s={k: round(v, 2) for k, v in med.items()},
               merged_over_base=round(med["merged"]/med["base"], 3), unmerged_over_base=round(med["unmerged"]/med["base"], 3),
               unmerged_latency_overhead=round(med["base"]/med["unmerged"] - 1, 3),
               merge_seconds=round(merge_s, 1), merge_verify_seconds_reported=round(rep.seconds, 1), merge_ok=rep.ok,
               merge_peak_rss_mb=round(mem.peak/2**20), rss_before_merge_mb=round(rss0/2**20),
               process_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024))
    print(json.dumps(res, indent=1))
    print(f"merged decode speed = {res['merged_over_base']:.3f} x base  ->  within 5%: {abs(res['merged_over_base'] - 1) <= 0.05}")
    print(f"unmerged adapter    = {res['unmerged_over_base']:.3f} x base  (latency overhead {res['unmerged_latency_overhead']:+.1%})")
    print(f"merge of cpu tier   = {merge_s:.1f} s (incl. load, verify, save)  ->  <= 60 s: {merge_s <= 60}")
    print(f"peak RSS during merge {res['merge_peak_rss_mb']} MB (process started at {res['rss_before_merge_mb']} MB)")
    return res


if __name__ == "__main__":
    main()
