"""First (convert from the packaged GGUF) vs cached load time of the cpu tier, in one run.

    python bench/bench_models.py
Target (issue 2): cached load <= 5 s.
"""
import os, tempfile, time

def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PLAYBOOK_CACHE"] = tmp       # a cold cache, in this process only
        from transformers.utils import logging; logging.disable_progress_bar(); logging.set_verbosity_error()
        from playbook_lib.models import load_base
        t0 = time.perf_counter(); load_base("cpu"); first = time.perf_counter() - t0
        cached = []
        for _ in range(3):
            t0 = time.perf_counter(); load_base("cpu"); cached.append(time.perf_counter() - t0)
    best = min(cached)
    print(f"first load (GGUF -> safetensors cache): {first:6.1f} s")
    print(f"cached load (best of 3):                {best:6.1f} s   (runs: {', '.join(f'{c:.1f}' for c in cached)})")
    print(f"speed-up: {first/best:.1f}x   target cached <= 5 s: {'met' if best <= 5 else 'NOT met'}")

if __name__ == "__main__":
    main()
