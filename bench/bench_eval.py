"""Benchmarks for chapter 4 (playbook_lib.judge / golden); every ratio is measured in this one run.

    flock /tmp/playbook-cpu.lock python bench/bench_eval.py [--pairs 200] [--delay 0.03] [--prompts 16] [--new-tokens 32,96]

1. 200 pairs (400 judge calls) against the scripted loopback judge with a fixed delay per request:
   concurrency 8 vs sequential (target >= 5x);
2. the same run again on a warm cache: requests sent (target 0);
3. batched local generation (chat_generate, batch_size=16) vs one at a time (batch_size=1) on the cpu model:
   generated tokens per second (target >= 4x), after one warm-up call, at two answer lengths: 32 new tokens, where the
   ~200-token prompts' prefill dominates, and 96, the length of a ticket (the test split's answers average 83 tokens).
   The target is judged at the ticket length, the work `run_golden` and `evaluate_tickets` actually do.
4. (--dtype-model DIR) the demo's evaluate stage answers in bf16 on a CPU with bf16 matrix instructions: the same greedy
   answers to N test messages in fp32 and in bf16, batch 16, up to 160 new tokens, after one warm-up each: seconds, the
   speed-up, how many answers are identical, and exact match in each dtype with the discordant pairs between them.
   DIR is a merged specialist, e.g. the demo's `runs/<time>/model` (a trained model: the base's answers say nothing).
"""
import argparse, tempfile, time
from pathlib import Path

from playbook_lib.judge import ScriptedJudgeServer, pairwise_judge

def bench_judge(n_pairs, delay):
    items = [f"问题 {i}" for i in range(n_pairs)]
    A, B = [f"回答 A{i}" for i in range(n_pairs)], [f"回答 B{i}" + "！" * (i % 3) for i in range(n_pairs)]
    res = {}
    with tempfile.TemporaryDirectory() as d, ScriptedJudgeServer(verdict="longer", delay=delay) as srv:
        for conc in (1, 8):
            t0 = time.perf_counter()
            r = pairwise_judge(items, A, B, endpoint=srv.url, model="scripted", cache=Path(d) / f"c{conc}.jsonl", concurrency=conc)
            res[conc] = time.perf_counter() - t0, r.usage.requests
        before = srv.requests
        t0 = time.perf_counter()
        r = pairwise_judge(items, A, B, endpoint=srv.url, model="scripted", cache=Path(d) / "c8.jsonl", concurrency=8)
        res["cached"] = time.perf_counter() - t0, srv.requests - before, r.usage.cache_hits
    return res

def bench_generate(n_prompts, lengths):
    from playbook_lib.models import load_base, chat_generate
    from playbook_lib.golden import load_golden
    model, tok = load_base("cpu")
    convs = [c["messages"] for c in load_golden(limit=n_prompts)]
    chat_generate(model, tok, convs[:2], max_new_tokens=4, batch_size=2)    # warm-up, so neither side pays it
    out = {}
    for n in lengths:
        for bs in (1, 16):
            t0 = time.perf_counter()
            answers = chat_generate(model, tok, convs, max_new_tokens=n, batch_size=bs)
            dt = time.perf_counter() - t0
            toks = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
            out[n, bs] = toks / dt, toks, dt
    return out

def bench_dtype(model_dir, n):
    import torch
    from playbook_lib.models import load_base, chat_generate
    from playbook_lib.tickets import load_split, score_tickets
    test = load_split("test", n)
    convs, golds = [r["messages"][:2] for r in test], [r["messages"][2]["content"] for r in test]
    out = {}
    for dtype in ("float32", "bfloat16"):
        model, tok = load_base(str(model_dir), dtype="float32")
        model = model.to(getattr(torch, dtype))
        chat_generate(model, tok, convs[:2], max_new_tokens=8, batch_size=2)   # warm-up
        t0 = time.perf_counter()
        answers = chat_generate(model, tok, convs, max_new_tokens=160, batch_size=16)
        out[dtype] = time.perf_counter() - t0, answers, score_tickets(answers, golds)
        del model
    return out

def ticket_tokens():
    "Mean answer length of the test split in tokens (what one generated ticket costs)."
    from playbook_lib.models import load_tokenizer
    from playbook_lib.tickets import load_split
    tok = load_tokenizer("cpu")
    lens = [len(tok(r["messages"][2]["content"], add_special_tokens=False)["input_ids"]) for r in load_split("test")]
    return sum(lens) / len(lens)

def main(argv=None):
    p = argparse.ArgumentParser(description="第四章基准：并发裁判、缓存重跑、批量生成")
    p.add_argument("--pairs", type=int, default=200); p.add_argument("--delay", type=float, default=0.03)
    p.add_argument("--prompts", type=int, default=16); p.add_argument("--new-tokens", default="32,96", help="answer lengths, comma-separated; the target is judged at the last")
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--dtype-model", help="a merged specialist directory: compare its fp32 and bf16 greedy answers")
    p.add_argument("--dtype-n", type=int, default=200, help="test messages for --dtype-model")
    a = p.parse_args(argv)
    if a.dtype_model:
        from playbook_lib.tickets import load_split, score_tickets
        r = bench_dtype(a.dtype_model, a.dtype_n)
        (t32, a32, s32), (t16, a16, s16) = r["float32"], r["bfloat16"]
        golds = [x["messages"][2]["content"] for x in load_split("test", a.dtype_n)]
        ok = lambda ans: [score_tickets([x], [g]).exact_match == 1 for x, g in zip(ans, golds)]   # per answer, the same scorer
        o32, o16 = ok(a32), ok(a16)
        print(f"greedy answers of {a.dtype_model} to {len(a32)} test messages, batch 16, <= 160 new tokens:")
        print(f"  float32   {t32:6.1f} s   exact {s32.exact_match:.1%}   JSON-valid {s32.json_valid:.1%}")
        print(f"  bfloat16  {t16:6.1f} s   exact {s16.exact_match:.1%}   JSON-valid {s16.json_valid:.1%}   speed-up {t32/t16:.2f}x")
        print(f"  identical answers {sum(x == y for x, y in zip(a32, a16))}/{len(a32)}; exact only in fp32 {sum(x and not y for x, y in zip(o32, o16))},"
              f" only in bf16 {sum(y and not x for x, y in zip(o32, o16))}")
        return
    j = bench_judge(a.pairs, a.delay)
    (t1, r1), (t8, r8), (tc, rc, hits) = j[1], j[8], j["cached"]
    print(f"judge, {a.pairs} pairs ({2*a.pairs} calls, {a.delay*1000:.0f} ms each on the server):")
    print(f"  sequential     {t1:6.2f} s  ({r1} requests)")
    print(f"  concurrency 8  {t8:6.2f} s  ({r8} requests)   speed-up {t1/t8:.1f}x  (target >= 5x)")
    print(f"  cached re-run  {tc:6.2f} s  ({rc} requests sent, {hits} cache hits)  (target 0 requests)")
    if a.skip_generate: return
    lengths = [int(x) for x in a.new_tokens.split(",")]
    g = bench_generate(a.prompts, lengths)
    print(f"local generation, cpu model, {a.prompts} golden prompts; a test-split ticket averages {ticket_tokens():.0f} tokens:")
    for n in lengths:
        for bs in (1, 16): print(f"  {n:3} new tokens, batch_size={bs:<3} {g[n, bs][0]:7.1f} tokens/s  ({g[n, bs][1]} tokens in {g[n, bs][2]:.1f} s)")
        print(f"  {n:3} new tokens: batched / one-at-a-time {g[n, 16][0]/g[n, 1][0]:.1f}x" + ("  (target >= 4x at a ticket's length)" if n == lengths[-1] else ""))

if __name__ == "__main__": main()
