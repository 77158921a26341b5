"""Training throughput on the `cpu` tier: plain TRL SFTTrainer defaults vs `playbook_lib.train.train_sft`, same data, one run.

Prints tokens/s, the achieved matmul FLOP/s as a fraction of this machine's fp32 matmul peak (measured here with torch.mm),
the ratio ours/plain, and each variant's peak memory (max RSS of its own subprocess). Each optimizer step sees 8 sequences:
plain TRL as batch 8, ours as the chapter's recipe (batch 4 x gradient accumulation 2). `ours` uses bf16 autocast where the
CPU has bf16 matmul units (AMX / AVX512-BF16) and stores the frozen linear weights in bf16 once (precast_frozen_linears), `ours_fp32` forces fp32: both are compared with the same fp32 peak
(on a CPU without bf16 units `ours` is fp32 already, and `ours_fp32` is skipped). `ours` runs with transparent huge pages for
PyTorch's CPU allocator (THP_MEM_ALLOC_ENABLE=1 in its environment, as setup_runtime() arranges for `playbook train`) and so without TrimHeap; `ours_4k` turns that
off (4 KB pages, malloc_trim after every step) to show what it is worth. `plain` runs with PyTorch's default, 4 KB pages.
`ours` computes the prompt prefix that a whole micro-batch shares (the system prompt) once per batch; `ours_noshare` turns that off.
tok/s counts the conversations' tokens; the FLOP/s figure counts only the row-tokens actually computed (shared ones once), so it
measures the hardware's work, not the saving.

    flock /tmp/playbook-cpu.lock python bench/bench_train.py [--steps 6] [--n 96]
"""
import argparse, json, os, resource, subprocess, sys, time

def fp32_peak(n=2048, reps=8):
    "Best-of fp32 torch.mm throughput in FLOP/s."
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3): a @ b
    best = 0.
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps): a @ b
        best = max(best, 2*n**3*reps/(time.perf_counter() - t))
    return best

class Meter:
    "Per-step wall times and cumulative non-pad token counts (TRL logs num_tokens every step)."
    def __init__(self): self.times = []
    def callback(self):
        from transformers import TrainerCallback
        meter = self
        class C(TrainerCallback):
            def on_step_begin(self, *a, **k): self.t = time.perf_counter()
            def on_step_end(self, *a, **k): meter.times.append(time.perf_counter() - self.t)
        return C()

def linear_params(model):
    import torch
    return sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n and "lm_head" not in n)

def run_variant(variant, steps, n):
    "Train `steps` steps with one variant in this process; return its measurements."
    from transformers.utils import logging as hf_logging; hf_logging.set_verbosity_error()
    import datasets; datasets.disable_progress_bars()
    from playbook_lib.tickets import load_split
    from playbook_lib.train import TrainConfig, train_sft, encode_chat
    from playbook_lib.models import load_base
    recs = load_split("train")[:n]
    meter, out = Meter(), f"/tmp/bench_train_{variant}_{os.getpid()}"
    if variant == "plain":  # TRL defaults; only what is needed to run on this CPU (bf16 default refuses without GPU)
        from datasets import Dataset
        from peft import LoraConfig
        from trl import SFTTrainer, SFTConfig
        model, tok = load_base("cpu")
        args = SFTConfig(output_dir=out, per_device_train_batch_size=8, max_steps=steps, bf16=False, report_to="none",
                         disable_tqdm=True, logging_steps=1, save_strategy="no", learning_rate=1e-3)
        tr = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in recs]),
                        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"), callbacks=[meter.callback()])
        tr.train()
        logs, nlin = tr.state.log_history, linear_params(tr.model)
    else:
        from playbook_lib.train import SPECIALIST_RECIPE as R   # the chapter's recipe: 8 sequences a step as 4 x accumulation 2
        cfg = TrainConfig(model="cpu", method="lora", max_steps=steps, batch_size=R["batch_size"], grad_accum=R["grad_accum"], eval_steps=0,
                          save_steps=0, early_stopping_patience=0, output_dir=out, compute_dtype="float32" if variant == "ours_fp32" else "auto",
                          share_prefix=variant != "ours_noshare")
        import playbook_lib.trainer as T   # train_sft imports StepTimer from here when it starts
        timers, orig = [], T.StepTimer
        T.StepTimer = lambda: timers.append(orig()) or timers[-1]
        try: res = train_sft(cfg, recs, None, progress=False)
        finally: T.StepTimer = orig
        meter.times = timers[0].times
        logs = res.history
        nlin = 0
    toks = [h["num_tokens"] for h in logs if "loss" in h]
    per_step = [b - a for a, b in zip([0] + toks[:-1], toks)]
    shared = [h.get("shared_prefix_tokens", 0) for h in logs if "loss" in h]
    shared_step = [b - a for a, b in zip([0] + shared[:-1], shared)]
    from playbook_lib._compat import thp_allocations
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return dict(variant=variant, times=meter.times, tokens=per_step, shared=shared_step, nlin=nlin, peak_gb=ru.ru_maxrss/2**20, thp=thp_allocations(),
                stime=ru.ru_stime, minflt=ru.ru_minflt)

def main():
    p = argparse.ArgumentParser(); p.add_argument("--steps", type=int, default=6); p.add_argument("--n", type=int, default=96)
    p.add_argument("--variant"); p.add_argument("--variants", default="plain,ours_4k,ours_fp32,ours_noshare,ours")
    a = p.parse_args()
    if a.variant:
        print("RESULT " + json.dumps(run_variant(a.variant, a.steps, a.n))); return
    import torch
    from playbook_lib.models import load_base
    m, _ = load_base("cpu")
    nlin = sum(x.weight.numel() for x in m.modules() if isinstance(x, torch.nn.Linear)) - m.lm_head.weight.numel()
    from playbook_lib.train import TrainConfig, resolve_dtype
    variants = a.variants.split(",")
    if "ours_fp32" in variants and resolve_dtype(TrainConfig(model="cpu")) == "float32":
        variants.remove("ours_fp32"); print("no bf16 matmul units on this CPU: `ours` is fp32 already, ours_fp32 skipped")
    peak = fp32_peak()
    print(f"threads {torch.get_num_threads()}; fp32 matmul peak {peak/1e9:.1f} GFLOP/s; decoder linear params {nlin/1e6:.1f} M")
    res = {}
    for v in variants:
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0" if v in ("plain", "ours_4k") else "1"}
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--steps", str(a.steps), "--n", str(a.n)], capture_output=True, text=True, env=env)
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if not line: print(out.stdout[-2000:], out.stderr[-3000:]); raise SystemExit(f"variant {v} failed")
        r = json.loads(line[0][7:])
        t, k, sh = r["times"][1:], r["tokens"][1:], r["shared"][1:]      # drop the first (warm-up) step
        r["tok_s"], r["computed_tok_s"] = sum(k)/sum(t), (sum(k) - sum(sh))/sum(t)
        # useful matmul work per token for LoRA: forward 2N + input-gradient backward 2N (frozen weights get no weight gradient);
        # the LM head runs only on trained positions (TRL's fused head) and is left out, so this undercounts slightly
        r["flops"] = r["computed_tok_s"]*4*nlin
        res[v] = r
        print(f"{v:12} {r['tok_s']:7.0f} tok/s ({sum(sh)/sum(k):4.0%} shared)  {sum(t)/len(t):5.2f} s/step  {r['flops']/1e9:6.1f} GFLOP/s = {r['flops']/peak:5.1%} of fp32 peak  "
              f"peak mem {r['peak_gb']:.2f} GB  huge pages {'on' if r['thp'] else 'off'}  sys {r['stime']:.0f} s  minor faults {r['minflt']/1e6:.2f} M")
    if "plain" in res:
        for v in res:
            if v != "plain": print(f"ratio {v}/plain: {res[v]['tok_s']/res['plain']['tok_s']:.2f}x")

if __name__ == "__main__": main()
