"""Benchmark for chapter 5c (playbook_lib.gguf): can the evaluate stage answer through llama.cpp instead of HF `generate`?

    flock /tmp/playbook-cpu.lock python bench/bench_gguf.py [--model DIR] [--n 40] [--new-tokens 160]

The same N test-split prompts, greedy, up to --new-tokens new tokens, answered three ways in this one run, each after one
warm-up call: HF `chat_generate` in fp32, batch 16 (what `evaluate_tickets` and `run_golden` do today); llama.cpp in process
(llama-cpp-python `create_chat_completion`, one prompt at a time, every core, repeat_penalty 1.0: plain greedy) on the f16 GGUF and on the q8_0 GGUF, both
exported from DIR with `export_gguf`. Prints seconds, generated tokens per second, the speed-up over HF, how many answers are
identical to HF's, and exact match for each. DIR defaults to the cpu-tier base model: the timing holds, but exact match says
nothing until DIR is a trained, merged specialist (e.g. the demo's runs/<time>/model).
"""
import argparse, os, tempfile, time
from pathlib import Path


def hf_answers(model_dir, prompts, new_tokens):
    from playbook_lib.models import chat_generate
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    chat_generate(model, tok, prompts[:2], max_new_tokens=8)   # warm-up
    t0 = time.perf_counter()
    outs = chat_generate(model, tok, prompts, max_new_tokens=new_tokens, batch_size=16)
    dt = time.perf_counter() - t0
    return outs, dt, sum(len(tok(o, add_special_tokens=False)["input_ids"]) + 1 for o in outs)


def llama_answers(gguf, prompts, new_tokens):
    from llama_cpp import Llama
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=os.cpu_count(), verbose=False)
    llm.create_chat_completion(prompts[0], max_tokens=8, temperature=0)   # warm-up
    outs, toks, t0 = [], 0, time.perf_counter()
    for p in prompts:
        r = llm.create_chat_completion(p, max_tokens=new_tokens, temperature=0, repeat_penalty=1.0)   # plain greedy (the server defaults to 1.1)
        outs.append(r["choices"][0]["message"]["content"] or ""); toks += r["usage"]["completion_tokens"]
    return outs, time.perf_counter() - t0, toks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="merged model directory (default: the cpu-tier base model)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--new-tokens", type=int, default=160)
    a = ap.parse_args()
    from playbook_lib.gguf import export_gguf
    from playbook_lib.models import model_source
    from playbook_lib.tickets import load_split, score_tickets
    model_dir = Path(a.model or model_source("cpu")[0])
    recs = load_split("test", a.n)
    prompts, gold = [r["messages"][:2] for r in recs], [r["messages"][2]["content"] for r in recs]
    info = Path("/proc/cpuinfo").read_text()
    cpu = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name"))
    print(f"machine: {os.cpu_count()} cores, {cpu}, avx512_bf16={'avx512_bf16' in info}; model {model_dir}; {a.n} prompts, <= {a.new_tokens} new tokens")
    with tempfile.TemporaryDirectory() as d:
        exp = export_gguf(model_dir, Path(d)/"gguf", quants=("f16", "q8_0"), modelfile_quant="q8_0")
        rows = {"HF fp32 batch 16": hf_answers(model_dir, prompts, a.new_tokens)}
        for q in ("f16", "q8_0"): rows[f"llama.cpp {q}"] = llama_answers(exp.path(q), prompts, a.new_tokens)
    base_outs, base_dt = rows["HF fp32 batch 16"][0], rows["HF fp32 batch 16"][1]
    print(f"{'':18s} {'seconds':>8s} {'tok/s':>7s} {'speed-up':>8s} {'same as HF':>10s} {'exact':>6s}")
    for name, (outs, dt, toks) in rows.items():
        same = sum(o.strip() == b.strip() for o, b in zip(outs, base_outs))
        print(f"{name:18s} {dt:8.1f} {toks/dt:7.1f} {base_dt/dt:7.2f}x {same:>5d}/{len(outs):<4d} {score_tickets(outs, gold).exact_match:6.1%}")


if __name__ == "__main__":
    main()
