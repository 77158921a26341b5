"""playbook_lib.train: label mask, LoRA/QLoRA on the tiny model, config errors, kill-and-resume, 2-process DDP.

Toy conversations (a few dozen tokens each) keep every run to seconds on the tiny random model.
"""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

from playbook_lib.train import TrainConfig, ConfigError, train_sft, check_config, encode_chat, _tiny_for
import playbook_lib.train as T
import playbook_lib.trainer as TR

def toy(n, seed=0):
    import random
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append([{"role": "user", "content": f"{a}+{b}=?"}, {"role": "assistant", "content": f"{a+b}"}])
    return out

def write_jsonl(path, convs):
    path.write_text("\n".join(json.dumps({"messages": c}, ensure_ascii=False) for c in convs) + "\n")
    return str(path)

def tiny_cfg(tmp_path, **kw):
    d = dict(model="tiny", max_steps=8, batch_size=4, eval_steps=0, save_steps=0, learning_rate=1e-2, warmup_ratio=0.0,
             max_length=128, output_dir=str(tmp_path/"out"))
    return TrainConfig(**{**d, **kw})

@pytest.fixture(scope="module")
def tok():
    from playbook_lib.models import load_tokenizer
    return load_tokenizer("cpu")

# --- the label mask ------------------------------------------------------------------------------------------------

def test_label_mask_trains_assistant_and_end_of_turn(tok):
    assert tok.pad_token_id == tok.eos_token_id  # the trap: pad == eos
    conv = [{"role": "system", "content": "你是工单分析员。"}, {"role": "user", "content": "退款"},
            {"role": "assistant", "content": '{"intent":"refund"}'}]
    ex = encode_chat(tok, conv)
    trained = [i for i, l in enumerate(ex["labels"]) if l != -100]
    assert tok.decode([ex["input_ids"][i] for i in trained]) == '{"intent":"refund"}<|im_end|>'
    assert ex["labels"][trained[-1]] == tok.eos_token_id
    assert all(l == -100 for l in ex["labels"][:trained[0]])          # system + user + generation prompt: masked
    assert trained == list(range(trained[0], trained[-1] + 1))        # one contiguous assistant span

def test_collator_keeps_end_of_turn_label_when_pad_is_eos(tok):
    "The batch TRL's SFTTrainer builds: padding is -100, the assistant's <|im_end|> (same id as pad) stays trained."
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    rows = [encode_chat(tok, c) for c in toy(2)] + [encode_chat(tok, [{"role": "user", "content": "hi " * 20}, {"role": "assistant", "content": "ok"}])]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(rows)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        last_trained = max(j for j, l in enumerate(r["labels"]) if l != -100)
        assert batch["labels"][i, last_trained].item() == tok.eos_token_id == tok.pad_token_id
        assert (batch["labels"][i, n:] == -100).all() and (batch["attention_mask"][i, n:] == 0).all()

# --- training ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_loss_falls(tmp_path, method):
    res = train_sft(tiny_cfg(tmp_path, method=method), toy(32), toy(8, seed=1), progress=False)
    assert res.steps == 8 and all(math.isfinite(l) for l in res.losses)
    assert res.losses[-1] < res.losses[0]
    out = Path(res.output_dir)
    assert (out/"adapter_model.safetensors").exists() and (out/"chat_template.jinja").exists() and (out/"loss.png").exists()

def test_qlora_tiny_model_is_really_4bit(tmp_path):
    import bitsandbytes as bnb
    model, _ = _tiny_for(tiny_cfg(tmp_path, method="qlora"))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())

# --- configuration errors ------------------------------------------------------------------------------------------

def test_config_errors_list_valid_values(tmp_path):
    with pytest.raises(ConfigError, match="可选：full, lora, qlora, ia3, ptuning"): TrainConfig(method="dora")
    with pytest.raises(ConfigError, match="r=0"): TrainConfig(r=0)
    with pytest.raises(ConfigError, match="可选：none, tensorboard, wandb, trackio"): TrainConfig(report_to="mlflow")
    with pytest.raises(ConfigError, match="合法的键：.*learning_rate"): TrainConfig.from_yaml("lr: 1e-3")
    p = tmp_path/"c.yaml"; TrainConfig(method="qlora", r=4).to_yaml(p)
    assert TrainConfig.from_yaml(p) == TrainConfig(method="qlora", r=4)

def test_impossible_combinations_fail_before_model_load(tmp_path, tok, monkeypatch):
    def no_load(*a, **k): raise AssertionError("the model was loaded")
    monkeypatch.setattr(T, "load_for_training", no_load)
    t4 = dict(name="Tesla T4", memory_gb=15.0, capability=(7, 5))
    with pytest.raises(ConfigError, match="compute_dtype: float16"):
        check_config(tiny_cfg(tmp_path, compute_dtype="bfloat16"), gpu=t4)
    with pytest.raises(ConfigError, match="max_length 至少"):
        train_sft(tiny_cfg(tmp_path, max_length=16), toy(8), progress=False)
    real = T.importlib.util.find_spec
    monkeypatch.setattr(T.importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(ConfigError, match="bitsandbytes"):
        train_sft(tiny_cfg(tmp_path, method="qlora"), toy(8), progress=False)

def test_cli_config_error_exit_code(tmp_path, capsys):
    from playbook_lib.train import cli_train
    p = tmp_path/"c.yaml"; p.write_text("method: lora\nlearning_rat: 0.1\n")
    assert cli_train([str(p)]) == 2
    assert "learning_rate" in capsys.readouterr().err

# --- processes: kill and resume, DDP -------------------------------------------------------------------------------

def _cli_config(tmp_path, **kw):
    cfg = tiny_cfg(tmp_path, train_data=write_jsonl(tmp_path/"train.jsonl", toy(64)), val_data=write_jsonl(tmp_path/"val.jsonl", toy(8, 1)), **kw)
    p = tmp_path/"cfg.yaml"; cfg.to_yaml(p)
    return p, Path(cfg.output_dir)

def _env(threads=1):
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}

def _complete_checkpoints(out):
    "Checkpoint dirs whose trainer_state.json (written last by the Trainer) parses."
    done = []
    for p in out.glob("checkpoint-*"):
        try: json.loads((p/"trainer_state.json").read_text()); done.append(p)
        except (OSError, ValueError): pass
    return done

def test_kill_then_resume_continues_from_checkpoint(tmp_path):
    # 200 steps take the tiny model ~15 s here; we kill as soon as the first checkpoint is complete, long before the end
    p, out = _cli_config(tmp_path, max_steps=200, save_steps=4)
    cmd = [sys.executable, "-m", "playbook_lib.train", str(p), "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not _complete_checkpoints(out) and time.time() < deadline and proc.poll() is None: time.sleep(0.05)
    assert proc.poll() is None, "training finished (or died) before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert not (out/"train_result.json").exists()
    # a checkpoint half-written at the moment of the kill: newer than any complete one, no trainer_state.json
    newest = max(int(c.name.split("-")[1]) for c in out.glob("checkpoint-*"))
    half = out/f"checkpoint-{newest + 1}"
    half.mkdir(exist_ok=True); (half/"adapter_model.safetensors").write_bytes(b"truncated")
    done = subprocess.run(cmd, env=_env(2), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((out/"train_result.json").read_text())
    assert r["resumed_from"] and "checkpoint-" in r["resumed_from"] and not r["resumed_from"].endswith(half.name)
    assert r["steps"] == 200 and math.isfinite(r["train_loss"])
    assert 4 <= int(r["resumed_from"].rsplit("-", 1)[1]) < 200

def test_rerun_of_a_finished_run_neither_trains_past_max_steps_nor_mixes_runs(tmp_path, capsys):
    "Issue 28.5: the same config + data returns the finished result; other data or config is refused; fresh / a larger max_steps train."
    from playbook_lib.train import RunMismatchError, cli_train
    cfg = tiny_cfg(tmp_path, save_steps=4)
    first = train_sft(cfg, toy(64), progress=False)
    again = train_sft(cfg, toy(64), progress=False)                 # was: resumed checkpoint-8 and trained step 9, 0 token/s
    assert again.steps == first.steps == 8 and again.metrics["reused"] and again.tokens_per_s == first.tokens_per_s
    assert sorted(p.name for p in (tmp_path/"out").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    with pytest.raises(RunMismatchError, match="train 数据变了") as e: train_sft(cfg, toy(64, seed=5), progress=False)
    assert "fresh=True" in e.value.fix and "--fresh" in e.value.fix
    with pytest.raises(RunMismatchError, match=r"learning_rate: 0.01 → 0.02"): train_sft(tiny_cfg(tmp_path, save_steps=4, learning_rate=2e-2), toy(64), progress=False)
    assert (tmp_path/"out"/"train_result.json").exists()           # a refused run leaves the finished one as it was
    longer = train_sft(tiny_cfg(tmp_path, save_steps=4, max_steps=12), toy(64), progress=False)
    assert longer.steps == 12 and longer.resumed_from.endswith("checkpoint-8") and not (longer.metrics or {}).get("reused")
    other = train_sft(cfg, toy(64, seed=5), progress=False, fresh=True)
    assert other.steps == 8 and other.resumed_from is None and not (other.metrics or {}).get("reused")
    # the CLI: another dataset in the same output_dir is a configuration error (exit 2) that names --fresh; --fresh trains
    (tmp_path/"cli").mkdir()
    yml, out = _cli_config(tmp_path/"cli", save_steps=4)
    assert cli_train([str(yml), "--quiet"]) == 0
    write_jsonl(tmp_path/"cli"/"train.jsonl", toy(64, seed=9)); capsys.readouterr()
    assert cli_train([str(yml), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train 数据变了" in err and "playbook train --fresh" in err and err.count("怎么办") == 1
    assert cli_train([str(yml), "--quiet", "--fresh"]) == 0 and json.loads((out/"train_result.json").read_text())["steps"] == 8

def test_two_process_ddp_on_cpu(tmp_path):
    p, out = _cli_config(tmp_path, max_steps=4, batch_size=2)
    # `--cpu` makes accelerate run one process (multi-CPU expects mpirun); the torchrun launcher behind `--multi_gpu`
    # starts 2 processes, and on a machine without CUDA the trainer runs them on CPU with the gloo backend
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "playbook_lib.train", str(p), "--quiet"]
    done = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((out/"train_result.json").read_text())
    assert r["processes"] == 2 and r["steps"] == 4 and math.isfinite(r["train_loss"])

def test_example_config_loads():
    cfg = TrainConfig.from_yaml(Path(__file__).resolve().parent.parent/"examples"/"train_cpu.yaml")
    assert cfg.method == "lora" and cfg.model == "cpu"

# --- bitsandbytes on CPU: a mid-training evaluation must not cut the gradient -----------------------------------------

def test_qlora_gradient_survives_an_eval_pass_on_cpu():
    """bitsandbytes 0.50 repacks a Linear4bit's weight for inference the first time it runs in eval mode on an AVX512-BF16 CPU;
    the packed kernel has no backward, so afterwards no gradient reaches the layer's input. keep_4bit_differentiable prevents it."""
    import torch, bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit
    from playbook_lib.train import keep_4bit_differentiable
    torch.manual_seed(0)
    def layer():
        q = bnb.nn.Linear4bit(256, 128, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        q.load_state_dict(torch.nn.Linear(256, 128, bias=False).state_dict())
        return q.to("cpu")                                                # quantizes the weight
    def run_eval(q):
        q.eval()
        with torch.no_grad(): q(torch.randn(2, 256))                      # what a validation-loss pass does
    def input_grad(q):
        q.train(); x = torch.randn(3, 256, requires_grad=True)
        q(x).sum().backward(); return x.grad
    is_packed = lambda q: bool(getattr(q.weight.quant_state, "packing_format_for_cpu", False))
    live = layer().support_avx512bf16_for_cpu                             # the trap exists only on AVX512-BF16 CPUs
    if live:                                                              # show it: after one eval pass the gradient is gone
        plain = layer(); run_eval(plain)
        assert is_packed(plain) and input_grad(plain) is None
    fixed = layer()
    assert keep_4bit_differentiable(torch.nn.Sequential(fixed)) == int(bool(live)) and not fixed.support_avx512bf16_for_cpu
    run_eval(fixed)
    g, want = input_grad(fixed), dequantize_4bit(fixed.weight.data, fixed.weight.quant_state).sum(0)   # d/dx sum(x W^T) = column sums of W
    assert not is_packed(fixed) and g is not None and torch.allclose(g, want.expand_as(g), atol=1e-4)
    late = layer(); run_eval(late)                                        # already packed by an earlier eval: unpacked again
    assert keep_4bit_differentiable(late) == int(bool(live)) and not is_packed(late)
    g, want = input_grad(late), dequantize_4bit(late.weight.data, late.weight.quant_state).sum(0)
    assert g is not None and torch.allclose(g, want.expand_as(g), atol=1e-4)

# --- CPU fast paths: pre-cast frozen linears, validation loss without full logits -------------------------------------

def test_precast_frozen_linears_keeps_the_math_and_the_fp32_parts():
    """LoRA on a bf16-autocast CPU: frozen decoder Linear weights are stored in bf16 once. Embeddings, norms and the tied LM head
    stay fp32, LoRA matrices are fp32, and the autocast loss and input gradient match the fp32-weight model's."""
    import copy, torch
    from peft import get_peft_model
    from playbook_lib.models import tiny_model
    from playbook_lib.plan import peft_config_for
    from playbook_lib.train import precast_frozen_linears
    ref, tok = tiny_model(seed=0)
    cast = copy.deepcopy(ref)
    n_lin = sum(type(m) is torch.nn.Linear for m in ref.modules()) - (ref.get_output_embeddings() is not None)
    assert precast_frozen_linears(cast, torch.bfloat16) == n_lin > 0
    assert cast.get_input_embeddings().weight.dtype == torch.float32 and cast.get_output_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for n, p in cast.named_parameters() if "norm" in n)
    pc = lambda: peft_config_for("lora", 8, 16, 0.0, "all-linear", 20)
    ref, cast = get_peft_model(ref, pc()), get_peft_model(cast, pc())
    assert all(p.dtype == torch.float32 for p in cast.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="before the adapters"): precast_frozen_linears(cast, torch.bfloat16)
    ids = torch.tensor(tok("退款 SKU-12345 两件")["input_ids"])[None]
    def loss_and_grad(m):
        emb = m.get_input_embeddings()(ids).detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16): loss = m(inputs_embeds=emb, labels=ids).loss
        loss.backward(); return loss.item(), emb.grad
    (la, ga), (lb, gb) = loss_and_grad(ref), loss_and_grad(cast)
    assert math.isfinite(la) and abs(la - lb) < 1e-3 * abs(la) and torch.allclose(ga, gb, rtol=0.05, atol=1e-4)

def test_cpu_validation_loss_matches_the_full_logits_loss(tmp_path):
    "CPUSFTTrainer's validation loss (LM head on labelled positions only) equals Trainer's full-logits loss on the same batch."
    import torch
    from transformers import Trainer
    res = train_sft(tiny_cfg(tmp_path, max_steps=2, eval_steps=2), toy(16), toy(8, seed=1), progress=False)
    assert res.eval_loss is not None and math.isfinite(res.eval_loss)
    trainer_cls = TR.CPUSFTTrainer
    from playbook_lib.train import load_for_training, sft_args, encode_dataset
    cfg = tiny_cfg(tmp_path, max_steps=1, output_dir=str(tmp_path/"b"))
    model, tok, _ = load_for_training(cfg)
    from playbook_lib.plan import peft_config_for
    tr = trainer_cls(model=model, args=sft_args(cfg, "float32", None, True, False), processing_class=tok,
                     peft_config=peft_config_for("lora", 8, 16, 0.0, "all-linear", 20),
                     train_dataset=encode_dataset(tok, toy(8)), eval_dataset=encode_dataset(tok, toy(8, seed=1)))
    batch = tr._prepare_inputs(next(iter(tr.get_eval_dataloader())))
    tr.model.eval()
    with torch.no_grad():
        fast, out = tr.compute_loss(tr.model, batch, return_outputs=True)
        full, _ = Trainer.compute_loss(tr, tr.model, batch, return_outputs=True)
    assert out == {} and torch.allclose(fast, full, rtol=1e-4), (fast, full)

def _ticket_batch(tok, n=4):
    "n training tickets, right-padded by TRL's collator: the batch SFTTrainer hands to compute_loss."
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from playbook_lib.tickets import load_split
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)([encode_chat(tok, r["messages"]) for r in load_split("train", n=n)])
    return batch["input_ids"], batch["attention_mask"], batch["labels"]

def test_shared_prefix_gives_the_full_forward_loss_and_gradients_on_the_cpu_model(tok):
    """The real cpu-tier model with LoRA on all linear layers, a batch of 4 tickets: computing the shared system prompt once
    (K/V cache handed to every row) gives the loss and LoRA gradients of the full forward; activation checkpointing falls back."""
    import torch
    from peft import get_peft_model
    from playbook_lib.models import load_base
    from playbook_lib.plan import peft_config_for
    from playbook_lib.trainer import labelled_lm_loss, prefix_shared_hidden
    torch.manual_seed(0)
    model = get_peft_model(load_base("cpu")[0], peft_config_for("lora", 16, 32, 0.0, "all-linear", 20)).train()
    for n, p in model.named_parameters():
        if "lora_B" in n: torch.nn.init.normal_(p, std=0.01)
    ids, mask, labels = _ticket_batch(tok)
    inner, params = model.get_base_model(), [p for p in model.parameters() if p.requires_grad]
    (full, n_full, s0), (shared, n_shared, start) = [labelled_lm_loss(inner, ids, mask, labels, share_prefix=s) for s in (False, True)]
    assert s0 == 0 and start >= 60 and int(n_full) == int(n_shared) > 100
    g_full, g_shared = torch.autograd.grad(full, params), torch.autograd.grad(shared, params)
    gmax = max(g.abs().max().item() for g in g_full)
    assert torch.allclose(full, shared, rtol=1e-5), (full, shared)
    assert max((a - b).abs().max().item() for a, b in zip(g_full, g_shared)) < 1e-4*gmax
    (getattr(inner, "activation_checkpointing_enable", None) or inner.gradient_checkpointing_enable)()   # it drops the cache: no sharing
    assert prefix_shared_hidden(inner.model, ids, mask, labels)[1] == 0

def test_cpu_trainer_shares_the_prefix_in_training_and_validation(tmp_path, tok):
    """CPUSFTTrainer on ticket batches (LoRA and 4-bit QLoRA): it counts the row-tokens it shared, the loss falls, and its validation
    loss equals Trainer's full-logits loss; share_prefix=False turns the sharing off."""
    import torch
    from transformers import Trainer
    from playbook_lib.tickets import load_split
    from playbook_lib.train import load_for_training, sft_args, encode_dataset
    from playbook_lib.plan import peft_config_for
    for method in ("lora", "qlora"):
        res = train_sft(tiny_cfg(tmp_path, method=method, max_steps=4, max_length=512, output_dir=str(tmp_path/method)), load_split("train", n=16), None, progress=False)
        assert res.shared_prefix_tokens >= 4*3*60 and res.shared_prefix_tokens < res.tokens   # 4 steps x (4-1) rows x the system prompt
        assert res.losses[-1] < res.losses[0]
    off = train_sft(tiny_cfg(tmp_path, max_steps=1, max_length=512, share_prefix=False, output_dir=str(tmp_path/"off")), load_split("train", n=4), None, progress=False)
    assert off.shared_prefix_tokens == 0
    cfg = tiny_cfg(tmp_path, max_steps=1, max_length=512, output_dir=str(tmp_path/"b"))
    model, _, _ = load_for_training(cfg)
    tr = TR.CPUSFTTrainer(model=model, args=sft_args(cfg, "float32", None, True, False), processing_class=tok,
                                peft_config=peft_config_for("lora", 8, 16, 0.0, "all-linear", 20),
                                train_dataset=encode_dataset(tok, [r["messages"] for r in load_split("train", n=8)]),
                                eval_dataset=encode_dataset(tok, [r["messages"] for r in load_split("val", n=8)]))
    batch = tr._prepare_inputs(next(iter(tr.get_eval_dataloader())))
    assert TR.shared_prefix_len(batch["input_ids"], batch["attention_mask"], batch["labels"]) > 60
    tr.model.eval()
    with torch.no_grad():
        fast, _ = tr.compute_loss(tr.model, batch, return_outputs=True)
        full, _ = Trainer.compute_loss(tr, tr.model, batch, return_outputs=True)
    assert torch.allclose(fast, full, rtol=1e-4), (fast, full)

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="THP allocations and malloc_trim are Linux/glibc features")
def test_setup_runtime_turns_on_huge_page_allocations_and_trimheap_steps_aside():
    """Importing playbook_lib.train and .trainer sets nothing; setup_runtime() (what `playbook train`/`demo` call first) gives huge-page
    allocations without leaving THP_MEM_ALLOC_ENABLE for child processes; TrimHeap trims only when huge pages are off."""
    probe = """
import os, sys
if sys.argv[1] == "setup":
    from playbook_lib._compat import setup_runtime; setup_runtime()
import playbook_lib.train, playbook_lib.trainer as T, torch
from playbook_lib._compat import thp_allocations
x = torch.ones(2**23)   # 32 MB, touched
huge = sum(int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.startswith("AnonHugePages:"))   # kB; importing TRL alone maps one 2 MB huge page
print(thp_allocations(), huge >= 16 * 1024, T.TrimHeap().trim is None, os.environ.get("THP_MEM_ALLOC_ENABLE", "-"))   # kB: most of the 32 MB
"""
    def run(mode, **env):
        e = {k: v for k, v in _env().items() if k != "THP_MEM_ALLOC_ENABLE"}
        out = subprocess.run([sys.executable, "-c", probe, mode], env={**e, **env}, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-4:]
    thp_sys = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    kernel_thp = not thp_sys.exists() or "[never]" not in thp_sys.read_text()
    plain, on, off = run("import"), run("setup"), run("setup", THP_MEM_ALLOC_ENABLE="0")   # the user's explicit setting wins
    assert (plain[0], plain[2], plain[3]) == ("False", "False", "-")       # no import-time side effect
    assert (on[0], on[2], on[3]) == ("True", "True", "-")                  # huge-page blocks, no trimming, nothing inherited
    assert (off[0], off[2], off[3]) == ("False", "False", "0")
    if kernel_thp: assert (on[1], off[1]) == ("True", "False")             # the kernel really backs them with 2 MB pages

def test_training_and_loading_do_not_print_the_checkpointing_alias_warning(tmp_path):
    "peft reads transformers' deprecated `is_gradient_checkpointing`; every library path that wraps a model with peft hides that FutureWarning, nothing else."
    import warnings
    from peft import get_peft_model
    from playbook_lib.plan import peft_config_for, trainable_params
    from playbook_lib.merge import random_lora_adapter, merge_adapter
    alias = lambda ws: [w for w in ws if "is_gradient_checkpointing" in str(w.message)]
    with warnings.catch_warnings(record=True) as raw:               # the trap is real in this environment
        warnings.simplefilter("always")
        get_peft_model(_tiny_for(tiny_cfg(tmp_path))[0], peft_config_for("lora", 8, 16, 0.0, "all-linear", 0))
    assert alias(raw), "peft no longer reads the deprecated name: quiet_ckpt_alias can go"
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        res = train_sft(tiny_cfg(tmp_path, max_steps=2), toy(8), progress=False)
        T.load_specialist(res.output_dir)
        fresh = lambda: _tiny_for(tiny_cfg(tmp_path))                                # peft injects LoRA layers in place
        T.load_adapter(fresh()[0], res.output_dir)                                    # chapters 3-6, golden
        trainable_params(fresh()[0].config, "lora", r=8)                               # chapter 2's estimate
        rand = random_lora_adapter(fresh()[0], tmp_path/"rand")                        # chapter 5
        assert merge_adapter(fresh(), rand, tmp_path/"merged").ok                      # chapter 5's merge
        warnings.warn("a user's own FutureWarning", FutureWarning)      # other warnings still get through
    assert not alias(ws)
    assert any("a user's own" in str(w.message) for w in ws)

def test_example_config_is_the_specialist_recipe():
    "examples/train_cpu.yaml is chapter 2's recipe, key for key (it once drifted to lr 1e-3 / 90 steps / batch 8)."
    from dataclasses import asdict
    from playbook_lib.train import SPECIALIST_RECIPE
    root = Path(__file__).resolve().parent.parent
    ex = TrainConfig.from_yaml(root/"examples"/"train_cpu.yaml")
    assert asdict(ex) == asdict(TrainConfig(**SPECIALIST_RECIPE, output_dir=ex.output_dir))

def test_yaml_numbers_written_as_text_are_numbers_and_bad_ones_name_the_key(tmp_path):
    "PyYAML reads `learning_rate: 2e-3` (no dot) as a string; before: TypeError traceback and exit 1 (issue 28.4)."
    import yaml
    assert isinstance(yaml.safe_load("learning_rate: 2e-3")["learning_rate"], str)   # the trap itself
    c = TrainConfig.from_yaml("learning_rate: 2e-3\nmax_steps: '120'\n")
    assert c.learning_rate == 0.002 and isinstance(c.max_steps, int) and c.max_steps == 120
    for bad, key in (("learning_rate: fast\n", "learning_rate"), ("batch_size: '2.5'\n", "batch_size")):
        with pytest.raises(ConfigError, match=key): TrainConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="learning_rate"): TrainConfig(learning_rate="2e-3")
    cfg = tmp_path/"c.yaml"; cfg.write_text("model: tiny\nlearning_rate: fast\n")
    r = subprocess.run([str(Path(sys.executable).parent/"playbook"), "train", str(cfg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "learning_rate" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]

def test_train_reads_the_formats_check_data_reads(tmp_path):
    "Before: alpaca or sharegpt JSONL crashed with KeyError: 'messages', and a mistyped path was taken for a split name (issue 28.3)."
    rows = [{"instruction": "Give the sentiment as JSON.", "input": f"The battery is {m}.", "output": json.dumps({"sentiment": m})}
            for m in ("great", "bad", "fine", "poor", "superb", "weak", "okay", "awful")]
    (tmp_path/"alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path/"sharegpt.jsonl").write_text("".join(json.dumps({"conversations": [{"from": "human", "value": r["input"]},
                                                               {"from": "gpt", "value": r["output"]}]}) + "\n" for r in rows))
    playbook = str(Path(sys.executable).parent/"playbook")
    for name in ("alpaca", "sharegpt"):
        cfg = TrainConfig(model="tiny", max_steps=2, batch_size=4, eval_steps=0, train_data=str(tmp_path/f"{name}.jsonl"),
                          val_data=str(tmp_path/f"{name}.jsonl"), output_dir=str(tmp_path/f"run-{name}"))
        cfg.to_yaml(tmp_path/f"{name}.yaml")
        r = subprocess.run([playbook, "train", str(tmp_path/f"{name}.yaml"), "--quiet"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path/f"run-{name}"/"adapter_model.safetensors").exists()
    cfg = TrainConfig(model="tiny", max_steps=2, train_data=str(tmp_path/"alpaca.jsnol"), output_dir=str(tmp_path/"typo"))
    cfg.to_yaml(tmp_path/"typo.yaml")
    r = subprocess.run([playbook, "train", str(tmp_path/"typo.yaml")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "alpaca.jsnol" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_qlora_counts_the_matrices_its_4bit_weights_stand_for(tmp_path):
    "Issue 28.12: a packed 4-bit weight holds two values per byte, so QLoRA's total was about half and its trainable % doubled."
    lora = train_sft(tiny_cfg(tmp_path/"l", method="lora", max_steps=1), toy(8), progress=False)
    qlora = train_sft(tiny_cfg(tmp_path/"q", method="qlora", max_steps=1), toy(8), progress=False)
    assert qlora.trainable == lora.trainable and qlora.total == lora.total


def test_a_trained_adapter_names_its_hub_base_and_merges_into_a_readable_release(tmp_path):
    "Issue 28.12: the adapter named a cache path on this machine; merge read training_config.json, which nothing writes; the release was 0700."
    from playbook_lib.merge import merge_adapter
    umask = os.umask(0o22); os.umask(umask)
    res = train_sft(tiny_cfg(tmp_path, model="cpu", max_steps=1, batch_size=2), toy(4), progress=False)
    out = Path(res.output_dir)
    assert json.loads((out/"adapter_config.json").read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (out/"run_fingerprint.json").stat().st_mode & 0o777 == 0o666 & ~umask
    rel = tmp_path/"release"
    assert merge_adapter("cpu", out, rel, probes=toy(2)).ok
    assert rel.stat().st_mode & 0o777 == 0o777 & ~umask
    card = (rel/"README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert '"learning_rate": 0.01' in card and '"max_steps": 1' in card   # the training config train_sft wrote


@pytest.mark.parametrize("family", ["gemma2", "cohere", "llama"])
def test_cpu_loss_applies_the_models_own_logit_transform(family):
    "Issue 29: labelled_lm_loss bypassed forward(), so Gemma-2's final_logit_softcapping and Cohere's logit_scale were skipped on CPU."
    import torch
    from transformers import AutoModelForCausalLM, CohereConfig, Gemma2Config, LlamaConfig
    small = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    cfg = {"gemma2": lambda: Gemma2Config(**small, head_dim=8, final_logit_softcapping=2.0, attn_logit_softcapping=None),
           "cohere": lambda: CohereConfig(**small, logit_scale=0.25), "llama": lambda: LlamaConfig(**small)}[family]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad(): model.lm_head.weight.mul_(20)   # large logits, so a skipped softcap or scale changes the loss a lot
    ids = torch.randint(0, 128, (2, 24)); labels = ids.clone(); labels[:, :10] = -100
    with torch.no_grad():
        full = model(input_ids=ids, labels=labels).loss
        total, n, _ = TR.labelled_lm_loss(model, ids, labels=labels, share_prefix=False)
    assert torch.allclose(total/n, full, rtol=1e-4), (family, float(total/n), float(full))


def test_quiet_training_and_planning_leave_process_state_as_they_found_it(tmp_path):
    "Issue 29: train_sft(progress=False) turned datasets' bars off for good; importing plan set the whole bitsandbytes logger to ERROR."
    import logging, datasets
    import playbook_lib.plan  # noqa: F401
    assert logging.getLogger("bitsandbytes").level == logging.NOTSET
    datasets.enable_progress_bars()
    train_sft(tiny_cfg(tmp_path, max_steps=1), toy(4), progress=False)
    assert not datasets.are_progress_bars_disabled()


def test_train_sft_renders_each_conversations_tools(tmp_path):
    """Issue 25: tool-calling records train with their function schemas. conversations() keeps each record's `tools`
    (a Conversation is a plain message list that carries them), encode_dataset renders them, the run fingerprint covers them,
    and a tiny run trains. (The tiny model's tokenizer gets the book's llama3.1 template: prefix-preserving with tool turns.)"""
    from test_data import write_tool_records   # the tests/ folder is on sys.path (pytest's default import mode)
    from playbook_lib.models import tiny_model
    from playbook_lib.templates import CHAT_TEMPLATES
    src, tools = write_tool_records(tmp_path)
    convs = T.conversations(src)
    assert all(T.tools_of(c) == tools and isinstance(c, list) for c in convs) and T.tools_of([{"role": "user"}]) is None
    model, tok = tiny_model(seed=0)
    tok.chat_template = CHAT_TEMPLATES["llama3.1"]
    ds = T.encode_dataset(tok, convs)
    rendered = tok.decode(ds[0]["input_ids"])
    assert '"name": "get_order"' in rendered and "Environment: ipython" in rendered   # the schema block and the call
    cfg = TrainConfig(model="tiny", max_steps=2, batch_size=2, eval_steps=0, save_steps=0, max_length=1024, output_dir=str(tmp_path/"run"))
    fp = T.run_fingerprint(cfg, convs, [])
    other = [T.Conversation(c, [dict(tools[0], function=dict(tools[0]["function"], name="lookup"))]) for c in convs]
    assert T.run_fingerprint(cfg, other, [])["train_sha256"] != fp["train_sha256"]              # a changed schema is a changed run
    assert T.run_fingerprint(cfg, [list(c) for c in convs], [])["train_sha256"] != fp["train_sha256"]
    res = train_sft(cfg, convs, None, model=model, tokenizer=tok, progress=False)
    assert res.steps == 2 and math.isfinite(res.train_loss)

def test_data_a_template_cannot_split_is_a_data_error_not_a_crash():
    "Before: Qwen3 multi-turn data made encode_chat raise a bare ValueError inside train_sft (exit 70, 'a bug'); now a DataInputError (exit 2) that names the conversation and the fix."
    from playbook_lib.templates import family_tokenizer
    from playbook_lib.data import DataInputError
    from playbook_lib.cli import known_error
    multi = [{"role": "user", "content": "第一问"}, {"role": "assistant", "content": "答一"}, {"role": "user", "content": "第二问"}, {"role": "assistant", "content": "答二"}]
    with pytest.raises(DataInputError, match="第 1 段对话.*split_turns") as e: T.encode_dataset(family_tokenizer("qwen3"), [multi[:2], multi])
    assert known_error(e.value)[0] == 2
