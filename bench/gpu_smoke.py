"""Smoke test of the GPU tiers' code paths on whatever device is here: one script, one JSON and one Markdown summary.

    python bench/gpu_smoke.py --out $OUT            on a CUDA machine (the device tool): every step
    python bench/gpu_smoke.py --out DIR --quick     on CPU (CI): the tiny random model, CUDA-only steps say "skipped"

Steps (issue 27): 1 preflight, 2 the cpu-tier model loaded in bf16 and fp16, 3 LoRA and QLoRA training with the loss
falling, 4 resume from a checkpoint, 5 the label mask against the CPU run's, 6 merge with logit parity, 7 the golden set
on the merged model, 8 batched generation tokens/s, 9 the estimator's peak memory against torch.cuda.max_memory_allocated
(goal: within 15%), 10 the unsloth path when unsloth is installed (run first), else "skipped".
A step that fails is recorded with its error and the next step still runs; the exit code is 1 if any step failed.
The label-mask hash of a CPU run is committed in bench/results/gpu_smoke-cpu.json; a GPU run compares against it.
"""
import argparse, hashlib, json, math, os, platform, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_RESULT = ROOT/"bench"/"results"/"gpu_smoke-cpu.json"
MASK_MAX_LENGTH = 512   # the label mask is computed for the first 8 training conversations at this length, on every device

class Skip(Exception):
    "A step that cannot run here (no CUDA, no unsloth): recorded as skipped with the reason."

def run_step(results, name, fn):
    t0 = time.perf_counter()
    try: out = dict(status="ok", **(fn() or {}))
    except Skip as e: out = dict(status="skipped", reason=str(e))
    except Exception as e: out = dict(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-2000:])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    results.append(dict(step=name, **out))
    print(f"[{out['status']:>7}] {name} ({out['seconds']} s)" + (f": {out.get('reason') or out.get('error')}" if out["status"] != "ok" else ""), flush=True)
    return out

def loss_falls(losses):
    "The mean of the last third of the logged losses is below the mean of the first third."
    k = max(1, len(losses)//3)
    return sum(losses[-k:])/k < sum(losses[:k])/k

def label_mask_hash(tok, convs, max_length):
    "sha256 of the labels TRL's collator builds for `convs` (the batch the trainer sees), and the trained-token count."
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from playbook_lib.train import encode_chat
    rows = [encode_chat(tok, c, max_length) for c in convs]
    labels = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(rows)["labels"]
    for i, r in enumerate(rows):   # the collator keeps every row's own mask, padding is -100
        n = len(r["labels"])
        assert labels[i, :n].tolist() == list(r["labels"]) and (labels[i, n:] == -100).all()
    mask = (labels != -100).to("cpu").numpy().tobytes()
    return hashlib.sha256(mask).hexdigest(), int((labels != -100).sum())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "bench/results"), help="where gpu_smoke-<device>.json/.md go (default $OUT)")
    p.add_argument("--quick", action="store_true", help="tiny random model, few steps: the CPU run CI does")
    p.add_argument("--steps", type=int, default=None, help="training steps per method (default 20; --quick: 6)")
    a = p.parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar(); hf_logging.set_verbosity_error()
    import torch
    from playbook_lib.models import gpu_info, load_base, load_tokenizer, chat_generate
    from playbook_lib.plan import preflight, estimate, model_config
    from playbook_lib.train import TrainConfig, train_sft, load_for_training, has_unsloth, conversations
    from playbook_lib.tickets import load_split
    from playbook_lib.merge import merge_adapter
    from playbook_lib.golden import run_golden
    cuda, gpu = torch.cuda.is_available(), gpu_info()
    model = "tiny" if a.quick else "cpu"
    steps = a.steps or (6 if a.quick else 20)
    batch, max_length = (2, 256) if a.quick else (4, 512)
    bf16_cpu = "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None
    device = gpu["name"] if gpu else f"cpu ({platform.machine()}, {os.cpu_count()} cores, {'AVX512-BF16' if bf16_cpu else 'no AVX512-BF16'})"
    work = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    train, val = load_split("train", 64), load_split("val", 8)
    tok = load_tokenizer("cpu")
    results, facts = [], dict(device=device, cuda=cuda, torch=torch.__version__, quick=a.quick, model=model, steps=steps,
                              batch=batch, max_length=max_length, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    cfg = lambda method, **kw: TrainConfig(**{**dict(model=model, method=method, max_steps=steps, batch_size=batch, max_length=max_length,
                                              learning_rate=2e-3, eval_steps=0, save_steps=max(1, steps//2), seed=0,
                                              output_dir=str(work/method)), **kw})
    trained, peaks = {}, {}

    def train_one(method, unsloth=False):
        c = cfg(method, output_dir=str(work/(method + ("-unsloth" if unsloth else ""))))
        if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        m, t, _ = load_for_training(c, gpu, unsloth=unsloth)
        res = train_sft(c, train, val, model=m, tokenizer=t, progress=False)
        peak = torch.cuda.max_memory_allocated()/2**30 if cuda else None
        del m
        losses = res.losses
        if not (losses and all(math.isfinite(x) for x in losses) and loss_falls(losses)): raise AssertionError(f"loss did not fall: {losses}")
        trained[method] = res; peaks[method] = peak
        return dict(steps=res.steps, first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4), tokens_per_s=round(res.tokens_per_s),
                    peak_gpu_gb=None if peak is None else round(peak, 3), peak_host_gb=round(res.peak_mem_gb, 2))

    def unsloth_step():
        if not cuda: raise Skip("no CUDA: unsloth runs on GPUs only")
        if not has_unsloth(): raise Skip("unsloth is not installed in this image")
        return train_one("lora", unsloth=True)
    run_step(results, "10 unsloth path (first)", unsloth_step)

    def step_preflight():
        pf = preflight()
        return dict(device_kind=pf.device, dtype=pf.dtype, method=pf.method, batch_size=pf.batch_size, grad_accum=pf.grad_accum, bitsandbytes=pf.bitsandbytes)
    run_step(results, "1 preflight", step_preflight)

    def step_load():
        out = {}
        for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            if not cuda and name == "fp16": out[name] = "skipped: fp16 is for GPUs without bf16 (T4)"; continue
            if a.quick and not cuda: out[name] = "skipped: --quick does not load the 135M model"; continue
            m, t = load_base("cpu", dtype=dt, device_map="cuda" if cuda else None)
            ids = t.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, return_tensors="pt", return_dict=True).to(m.device)
            with torch.inference_mode(): logits = m(**ids).logits
            assert torch.isfinite(logits).all(), f"{name}: non-finite logits"
            out[name] = f"ok ({m.dtype}, {m.device})"; del m
        if all(v.startswith("skipped") for v in out.values()): raise Skip("; ".join(f"{k} {v}" for k, v in out.items()))
        return out
    run_step(results, "2 load cpu-tier model bf16 / fp16", step_load)
    run_step(results, "3a train LoRA", lambda: train_one("lora"))
    run_step(results, "3b train QLoRA (bitsandbytes NF4)", lambda: train_one("qlora"))

    def step_resume():
        c = cfg("lora", output_dir=str(work/"resume"), max_steps=steps//2)
        train_sft(c, train, val, progress=False)
        c2 = cfg("lora", output_dir=str(work/"resume"))
        res = train_sft(c2, train, val, progress=False)
        assert res.resumed_from and res.steps == steps, (res.resumed_from, res.steps)
        return dict(resumed_from=Path(res.resumed_from).name, steps=res.steps)
    run_step(results, "4 resume from a checkpoint", step_resume)

    def step_mask():
        h, n = label_mask_hash(tok, conversations(train[:8]), MASK_MAX_LENGTH)
        out = dict(label_mask_sha256=h, trained_tokens=n)
        if cuda and CPU_RESULT.exists():
            ref = json.loads(CPU_RESULT.read_text())["label_mask"]
            assert h == ref["sha256"], f"label mask differs from the CPU run's ({ref['sha256'][:12]}…)"
            out["same_as_cpu_run"] = True
        facts["label_mask"] = dict(sha256=h, trained_tokens=n, max_length=MASK_MAX_LENGTH, n=8)
        return out
    run_step(results, "5 label mask vs the CPU path", step_mask)

    def step_merge():
        if "lora" not in trained: raise Skip("LoRA training failed, nothing to merge")
        base = load_base("cpu") if model == "cpu" else None
        if base is None:
            from playbook_lib.train import _tiny_for
            base = _tiny_for(cfg("lora"))
        rep = merge_adapter(base, trained["lora"].output_dir, work/"merged")   # probes: the first golden cases
        assert rep.max_logit_diff <= rep.atol and rep.greedy_identical and rep.lora_modules_left == 0, rep
        return dict(max_logit_diff=rep.max_logit_diff, atol=rep.atol, greedy_identical=rep.greedy_identical)
    run_step(results, "6 merge with logit parity", step_merge)

    def step_golden():
        if not (work/"merged").exists(): raise Skip("no merged model")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        m = AutoModelForCausalLM.from_pretrained(work/"merged").to("cuda" if cuda else "cpu")
        rep = run_golden((m, AutoTokenizer.from_pretrained(work/"merged")), limit=8, max_new_tokens=64 if a.quick else 160)
        return dict(n=len(rep.cases), pass_rate=round(rep.pass_rate, 3))
    run_step(results, "7 golden set on the merged model", step_golden)

    def step_generate():
        if a.quick and not cuda: raise Skip("--quick: tokens/s of a random tiny model means nothing")
        m, t = load_base("cpu", dtype=torch.bfloat16 if cuda else None, device_map="cuda" if cuda else None)
        convs = [r["messages"][:-1] for r in load_split("test", 32)]
        chat_generate(m, t, convs[:4], max_new_tokens=8)   # warm-up
        t0 = time.perf_counter(); outs = chat_generate(m, t, convs, max_new_tokens=128, batch_size=32); s = time.perf_counter() - t0
        n = sum(len(t(o, add_special_tokens=False)["input_ids"]) for o in outs)
        return dict(conversations=len(convs), new_tokens=n, seconds=round(s, 2), tokens_per_s=round(n/s))
    run_step(results, "8 batched generation tokens/s", step_generate)

    def step_estimate():
        if not cuda: raise Skip("no CUDA: torch.cuda.max_memory_allocated is the reference")
        rows = {}
        for method in ("lora", "qlora"):
            if method not in trained: continue
            measured = peaks[method]
            est = estimate(model_config("cpu"), method, seq_len=max_length, batch=batch, checkpointing=True).total_gb
            rows[method] = dict(estimated_gb=round(est, 3), measured_gb=measured, ratio=round(est/measured, 3) if measured else None,
                                within_15pct=bool(measured and abs(est/measured - 1) <= 0.15))
        return dict(methods=rows)
    run_step(results, "9 estimator vs max_memory_allocated", step_estimate)

    facts["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    tag = "cpu" if not cuda else "".join(ch if ch.isalnum() else "-" for ch in gpu["name"]).strip("-").lower()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    for r in results: r.pop("traceback", None) if r["status"] != "failed" else None
    doc = dict(facts, steps_run=results, ok=all(r["status"] != "failed" for r in results))
    (out/f"gpu_smoke-{tag}.json.tmp").write_text(json.dumps(doc, indent=1, ensure_ascii=False)); (out/f"gpu_smoke-{tag}.json.tmp").replace(out/f"gpu_smoke-{tag}.json")
    md = [f"# GPU smoke: {device}", "", f"torch {facts['torch']}, model `{model}`, {steps} steps, batch {batch}, max_length {max_length}; {facts['started']} → {facts['finished']}", "",
          "| step | status | details |", "|---|---|---|"]
    for r in results:
        detail = r.get("reason") or r.get("error") or ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("step", "status", "seconds", "traceback"))
        md.append(f"| {r['step']} | {r['status']} | {str(detail).replace('|', '/')[:300]} |")
    (out/f"gpu_smoke-{tag}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out/f'gpu_smoke-{tag}.json'} and .md; {'all steps ok or skipped' if doc['ok'] else 'SOME STEPS FAILED'}")
    return 0 if doc["ok"] else 1

if __name__ == "__main__": raise SystemExit(main())
