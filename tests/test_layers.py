"The library's layers (issue 29): imports only go down, no cycle, no import-time side effects, private internals only in _compat."
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import layers  # noqa: E402

def test_every_module_has_a_layer():
    assert set(layers.modules()) == set(layers.RANK), set(layers.modules()) ^ set(layers.RANK)

def test_imports_only_go_down_the_layers():
    edges = layers.imports()
    assert edges, "the parser found no imports at all: it is broken, not the library clean"
    assert layers.upward(edges) == []
    assert layers.cycles(edges) == []

def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    "Planted: models importing train (upward) and train importing models (so a cycle)."
    for m in layers.RANK: (tmp_path/f"{m}.py").write_text("")
    (tmp_path/"models.py").write_text("def f():\n    from playbook_lib.train import TrainConfig\n")
    (tmp_path/"train.py").write_text("from .models import load_base\n")
    edges = layers.imports(tmp_path)
    assert ("models", "train", 2) in layers.upward(edges)
    assert layers.cycles(edges) == [["models", "train"]]

def test_private_third_party_internals_live_only_in_compat(tmp_path):
    assert layers.private_couplings() == [], layers.private_couplings()
    (tmp_path/"plan.py").write_text("import torch\ndef bf16(): return torch.ops.mkldnn._is_mkldnn_bf16_supported()\n"
                                    "def f(tr): return getattr(tr, '_metrics')\n")
    found = {a for _, _, a in layers.private_couplings(tmp_path)}
    assert found == {"_is_mkldnn_bf16_supported", "_metrics"}

def test_importing_data_does_not_load_the_trainer_or_set_runtime_knobs():
    src = ("import os, sys; before = dict(os.environ); import playbook_lib.data, playbook_lib.templates, playbook_lib.plan, playbook_lib.cli, playbook_lib.train; "
           "print(sorted(m for m in sys.modules if m.startswith(('transformers.trainer', 'trl')))); "
           "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout

def test_help_of_a_training_subcommand_does_not_load_torch():
    """Issue 28.10: `playbook train --help` took 7 s (train.py imported transformers' Trainer and TRL at the top, for the
    classes now in trainer.py) and `playbook demo --help` set up the training runtime (importing torch) first. Help is argparse only."""
    for cmd in ("train", "demo"):
        src = ("import sys; from playbook_lib.cli import main\n"
               f"try: main([{cmd!r}, '--help'])\nexcept SystemExit as e: code = e.code\n"
               "print(code, sorted(m for m in ('torch', 'trl', 'transformers.trainer', 'peft') if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"playbook {cmd}" in out.stdout and out.stdout.split("\n")[-2] == "0 []", (cmd, out.stdout[-500:])
