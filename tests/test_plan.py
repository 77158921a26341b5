"The memory estimator on inputs a user brings: an unsupported method or an unlisted GPU is named, never silently mis-estimated."
import os
import pytest
from playbook_lib.plan import estimate, GPU_SPECS, gpu_spec

SHAPE = "Qwen/Qwen2.5-1.5B-Instruct"   # a known shape: no network

def test_an_unsupported_method_is_refused_not_estimated_as_full():
    "Before: estimate(..., 'dora') returned the full fine-tuning figure (issue 28.9)."
    with pytest.raises(ValueError, match="dora.*full, lora, qlora"): estimate(SHAPE, "dora")
    assert estimate(SHAPE, "lora").total_gb < estimate(SHAPE, "full").total_gb

def test_an_unlisted_gpu_is_named_with_the_known_ones():
    "Before: a bare KeyError for RTX3090 / H200 (issue 28.9)."
    for g in ("H200", "RTX3090"): assert estimate(SHAPE, "qlora", gpu=g).gpu_gb == GPU_SPECS[g]["memory_gb"]
    with pytest.raises(ValueError, match="MI300X.*T4"): estimate(SHAPE, "qlora", gpu="MI300X")
    with pytest.raises(ValueError, match="GPU_SPECS"): gpu_spec("V100")


def test_preflight_sizes_the_cpu_batch_from_the_memory_the_cgroup_allows(tmp_path, monkeypatch):
    "Issue 28.11: preflight said batch 8 / accumulation 1 whatever the machine, and read host RAM even inside a 4 GB container."
    import playbook_lib.plan as P
    v2 = tmp_path/"v2"; v2.mkdir()
    (v2/"memory.max").write_text("4294967296\n"); (v2/"cpu.max").write_text("150000 100000\n")
    assert P.usable_memory_gb(v2) == 4.0 and P.usable_cores(v2) == 1
    (v2/"memory.max").write_text("max\n"); (v2/"cpu.max").write_text("max 100000\n")
    host = os.sysconf("SC_PAGE_SIZE")*os.sysconf("SC_PHYS_PAGES")/2**30
    assert abs(P.usable_memory_gb(v2) - host) < 0.1 and P.usable_cores(v2) == len(os.sched_getaffinity(0))
    v1 = tmp_path/"v1"; (v1/"memory").mkdir(parents=True)
    (v1/"memory"/"memory.limit_in_bytes").write_text(str(2**30*6)); assert P.usable_memory_gb(v1) == 6.0
    (v1/"memory"/"memory.limit_in_bytes").write_text("9223372036854771712"); assert abs(P.usable_memory_gb(v1) - host) < 0.1   # v1: no limit
    sizes = {m: P.cpu_batch(m) for m in (4, 8, 16, 64)}
    assert all(b*a == 8 for b, a in sizes.values()) and sizes[64] == (8, 1) and sizes[4][0] < sizes[8][0] < 8
    monkeypatch.setattr(P, "usable_memory_gb", lambda *a: 8.0)
    monkeypatch.setattr(P, "mps_available", lambda: False)
    pf = P.preflight()
    assert (pf.batch_size, pf.grad_accum) == P.cpu_batch(8.0) == (4, 2) and "可用内存 8 GB" in pf.reasons[0]


def test_preflight_and_training_take_the_mps_path_when_apple_silicon_is_there(tmp_path, monkeypatch):
    "Issue 28.11: with MPS available a Mac got the CPU path (use_cpu=True, the CPU trainer). Checked by the decisions, not on Apple hardware."
    import playbook_lib.plan as P
    import playbook_lib.train as T
    from playbook_lib.train import TrainConfig, ConfigError, check_config, resolve_dtype, sft_args
    for mod in (P, T): monkeypatch.setattr(mod, "mps_available", lambda: True)   # patched where it is looked up: train imports it by name
    pf = P.preflight()
    assert (pf.device, pf.dtype, pf.method, pf.bitsandbytes) == ("mps", "float32", "lora", False)
    cfg = TrainConfig(model="tiny", output_dir=str(tmp_path/"o"))
    assert resolve_dtype(cfg) == "float32" and sft_args(cfg, "float32").use_cpu is False
    with pytest.raises(ConfigError, match="MPS"): check_config(TrainConfig(model="tiny", method="qlora"))
    monkeypatch.setenv("PLAYBOOK_DEVICE", "cpu")
    assert sft_args(cfg, "float32").use_cpu is True


def test_estimator_options_are_explicit_and_change_what_they_should():
    "Issue 28.9: full FT was always 16 B/param; no pure-bf16, 8-bit or paged optimizer; logits and CUDA overhead were not counted."
    from playbook_lib.plan import CUDA_OVERHEAD_GB, PUBLISHED_MEMORY
    mixed, pure = estimate("llama-7b", "full"), estimate("llama-7b", "full", precision="pure_bf16")
    bpp = lambda e: (e.weights_gb + e.grads_gb + e.optimizer_gb)*2**30/e.total
    assert round(bpp(mixed)) == 16 and round(bpp(pure)) == 8
    assert round(bpp(estimate("llama-7b", "full", optimizer="adamw_8bit"))) == 10
    lora, lora8 = estimate(SHAPE, "lora"), estimate(SHAPE, "lora", optimizer="paged_adamw_8bit")
    assert abs(lora.optimizer_gb - 4*lora8.optimizer_gb) < 1e-9 and lora.weights_gb == lora8.weights_gb
    big_vocab = estimate("Qwen/Qwen2.5-7B-Instruct", "qlora", batch=4, seq_len=512)
    assert abs(big_vocab.logits_gb - 4*512*152064*8/2**30) < 1e-9 and estimate("Qwen/Qwen2.5-7B-Instruct", "qlora", logits=False).logits_gb == 0
    assert estimate(SHAPE, "qlora", gpu="T4").overhead_gb == CUDA_OVERHEAD_GB and estimate(SHAPE, "qlora").overhead_gb == 0
    with pytest.raises(ValueError, match="adamw_8bit"): estimate(SHAPE, "lora", optimizer="lion")
    guanaco = PUBLISHED_MEMORY[-1]   # the one measured fact: Guanaco-65B trained on a single 48 GB GPU
    assert 0.85*guanaco[4] <= estimate(**{"gpu": "A100-80GB", **guanaco[-1]}).total_gb <= guanaco[4]


def test_a_hub_id_that_is_not_cached_fails_at_once_with_what_to_pass(tmp_path, monkeypatch):
    "Issue 28.9: a hub id retried the network for 25 s, then a bare OSError with no hint to pass a config."
    import socket
    monkeypatch.setenv("HF_HOME", str(tmp_path))   # an empty Hugging Face cache
    tried = []
    def no_network(self, *a, **k): tried.append(a); raise OSError("network disabled in this test")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ValueError, match="MODEL_SHAPES.*hidden_size"): estimate("someone/not-cached-7B", "qlora")
    assert tried == []   # not one connection attempt, so no retries to wait for


def test_planning_in_a_fresh_process_prints_no_bitsandbytes_hub_notice():
    "02a's page showed bitsandbytes' kernels-community notice on stderr: plan imported peft before models' targeted filter existed."
    import subprocess, sys
    code = ("from playbook_lib.plan import trainable_params\n"
            "print(trainable_params('llama-7b', 'lora', r=8, target_modules=('q_proj', 'v_proj'))[0])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "4194304", r.stderr
    assert "kernels-community" not in r.stderr, r.stderr
