"Merge: parity on a tiny model, a QLoRA-trained adapter into a 16-bit base, refusals and clear errors."
import json, random, shutil
from pathlib import Path

import pytest, torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from playbook_lib.merge import (MergeError, STRATEGIES, cli_merge, merge_adapter, probe_conversations, random_lora_adapter)
from playbook_lib.models import load_base, tiny_model
from playbook_lib.train import encode_chat
from playbook_lib.tickets import load_split


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    return random_lora_adapter(tiny[0], tmp_path_factory.mktemp("a")/"adapter", r=8, seed=1)


def _logits(model, tok, convs):
    out = []
    for c in convs:
        ids = tok(tok.apply_chat_template(c, tokenize=False), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode(): out.append(model(input_ids=ids).logits.float())
    return out


def _greedy(model, tok, convs, n=20):
    outs = []
    for c in convs:
        ids = tok(tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            g = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        outs.append(g[0, ids["input_ids"].shape[1]:].tolist())
    return outs


def test_lora_weights_are_nonzero(adapter):
    from safetensors.torch import load_file
    sd = load_file(adapter/"adapter_model.safetensors")
    assert all(t.abs().sum() > 0 for k, t in sd.items() if "lora_B" in k)


def test_merge_parity_fp32(tiny, adapter, tmp_path):
    model, tok = tiny
    rep = merge_adapter((model, tok), adapter, tmp_path/"m", dtype="float32")
    assert rep.ok and rep.lora_modules_left == 0
    # independent check: reload both sides ourselves
    convs = probe_conversations(3)
    ref = PeftModel.from_pretrained(tiny_model(seed=0)[0], adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path/"m", dtype="float32").eval()
    assert not any("lora" in n for n, _ in merged.named_modules())
    diff = max((a - b).abs().max().item() for a, b in zip(_logits(ref, tok, convs), _logits(merged, tok, convs)))
    assert diff <= 1e-3
    # the adapter really changes the model (otherwise the parity check proves nothing)
    base_diff = max((a - b).abs().max().item() for a, b in zip(_logits(model, tok, convs), _logits(merged, tok, convs)))
    assert base_diff > 1e-2
    assert _greedy(ref, tok, convs) == _greedy(merged, tok, convs)


def test_release_contents(tiny, adapter, tmp_path):
    rep = merge_adapter(tiny, adapter, tmp_path/"m")
    out = tmp_path/"m"
    for f in ("model.safetensors", "config.json", "tokenizer_config.json", "generation_config.json", "README.md", "Modelfile", "merge_report.json"):
        assert (out/f).exists(), f
    gen = json.loads((out/"generation_config.json").read_text())
    im_end = tiny[1].convert_tokens_to_ids("<|im_end|>")
    assert im_end in (gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]])
    mf = (out/"Modelfile").read_text()
    assert 'PARAMETER stop "<|im_end|>"' in mf and "TEMPLATE" in mf and "{{ .Content }}" in mf
    card = (out/"README.md").read_text()
    assert rep.adapter_sha256 in card
    # a hand-made adapter has no training record: the card says so instead of printing empty braces
    assert "## 训练数据（sha256）\n\n（未记录）" in card and "{}" not in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_card_records_the_real_run(tiny, tmp_path):
    "The model card names the data the adapter was trained on (not every file under data/), its config, the base's pin and eval results (issue 23, item 10)."
    from playbook_lib.merge import record_eval
    from playbook_lib.train import TrainConfig, train_sft
    cfg = TrainConfig(model="tiny", max_steps=1, batch_size=2, n_train=4, n_val=2, eval_steps=0, save_steps=0, output_dir=str(tmp_path/"a"))
    train_sft(cfg, "train", "val", model=tiny_model(seed=0)[0], tokenizer=tiny[1], progress=False)
    merge_adapter(tiny, tmp_path/"a", tmp_path/"m")
    fp = json.loads((tmp_path/"a"/"run_fingerprint.json").read_text())
    card = (tmp_path/"m"/"README.md").read_text()
    assert fp["train_sha256"] in card and fp["val_sha256"] in card and "golden" not in card.split("## 训练数据")[1].split("## ")[0]
    assert '"max_steps": 1' in card and "## 评测结果\n\n（未记录）" in card and "## 基座版本" in card
    record_eval(tmp_path/"m", dict(golden_pass=0.5, golden_cases=2))
    card2 = (tmp_path/"m"/"README.md").read_text()
    assert '"golden_pass": 0.5' in card2 and card2.split("## 评测结果")[0] == card.split("## 评测结果")[0]
    assert card2.split("## 合并校验")[1] == card.split("## 合并校验")[1]


def _qlora_adapter(base_dir, out, steps=3):
    "Train a few QLoRA steps on a 4-bit tiny base and save the adapter."
    torch.manual_seed(0); random.seed(0)
    model, tok = load_base(str(base_dir), load_in_4bit=True)
    assert getattr(model, "is_loaded_in_4bit", False)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    rows = [encode_chat(tok, ex["messages"]) for ex in load_split("train", 4)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        for r in rows:
            loss = model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss
            loss.backward(); opt.step(); opt.zero_grad()
    model.save_pretrained(out)
    # reference logits in train mode (dropout is 0): on AVX512-BF16 CPUs bitsandbytes' eval-mode 4-bit kernel computes
    # in bf16, while training used fp32 dequantized weights; train mode reproduces what the adapter was trained against
    return _logits(model, tok, probe_conversations(2)), tok


@pytest.fixture(scope="module")
def qlora(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    tiny[0].save_pretrained(d/"base"); tiny[1].save_pretrained(d/"base")
    ref, tok = _qlora_adapter(d/"base", d/"adapter")
    return d, ref, tok


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_qlora_adapter_merged_into_16bit_base(qlora, strategy):
    d, ref, tok = qlora
    rep = merge_adapter(str(d/"base"), d/"adapter", d/f"merged-{strategy}", dtype="float32", strategy=strategy)
    assert rep.ok
    merged = AutoModelForCausalLM.from_pretrained(d/f"merged-{strategy}", dtype="float32").eval()
    assert merged.dtype == torch.float32 and not getattr(merged, "is_loaded_in_4bit", False)
    assert all(type(m).__name__ != "Linear4bit" for m in merged.modules())
    convs = probe_conversations(2)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, _logits(merged, tok, convs)))
    if strategy == "nf4_roundtrip": assert diff < 1e-4, diff  # matches what QLoRA trained against
    else: assert diff > 1e-3, diff  # the original 16-bit weights differ from the NF4 base the adapter saw


def test_refuses_4bit_model(qlora, tmp_path):
    d, _, _ = qlora
    q4, tok = load_base(str(d/"base"), load_in_4bit=True)
    with pytest.raises(MergeError, match="拒绝合并进量化"):
        merge_adapter((q4, tok), d/"adapter", tmp_path/"x")
    assert not (tmp_path/"x").exists()


def test_refuses_to_overwrite(tiny, adapter, tmp_path):
    out = tmp_path/"m"
    merge_adapter(tiny, adapter, out)
    before = (out/"model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        merge_adapter(tiny, adapter, out)
    assert (out/"model.safetensors").read_bytes() == before
    other = random_lora_adapter(tiny[0], tmp_path/"other", seed=7)
    merge_adapter(tiny, other, out, overwrite=True)
    assert (out/"model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "other"]


@pytest.fixture
def broken(adapter, tmp_path):
    d = tmp_path/"broken"; shutil.copytree(adapter, d); return d


def test_corrupt_weights(tiny, broken, tmp_path):
    w = broken/"adapter_model.safetensors"; w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(MergeError, match="损坏或被截断"): merge_adapter(tiny, broken, tmp_path/"x")
    assert not (tmp_path/"x").exists()


def test_corrupt_config(tiny, broken, tmp_path):
    (broken/"adapter_config.json").write_text("{not json")
    with pytest.raises(MergeError, match="adapter_config.json 损坏"): merge_adapter(tiny, broken, tmp_path/"x")


def test_missing_files(tiny, broken, tmp_path):
    (broken/"adapter_model.safetensors").unlink()
    with pytest.raises(MergeError, match="权重缺失"): merge_adapter(tiny, broken, tmp_path/"x")
    with pytest.raises(MergeError, match="不存在"): merge_adapter(tiny, tmp_path/"nowhere", tmp_path/"x")


def test_shape_mismatch(tiny, adapter, tmp_path):
    wider = tiny_model(hidden=128)
    with pytest.raises(MergeError, match="形状不匹配"): merge_adapter(wider, adapter, tmp_path/"x")


def test_different_base(qlora, tiny, tmp_path):
    d, _, _ = qlora
    other = tmp_path/"other-base"; tiny[0].save_pretrained(other); tiny[1].save_pretrained(other)
    with pytest.raises(MergeError, match="上训练的"): merge_adapter(str(other), d/"adapter", tmp_path/"x")
    assert merge_adapter(str(other), d/"adapter", tmp_path/"x", strict_base=False).ok


def test_failed_verification_writes_nothing(tiny, adapter, tmp_path):
    with pytest.raises(MergeError, match="校验未通过"): merge_adapter(tiny, adapter, tmp_path/"x", atol=-1.)
    assert list(tmp_path.iterdir()) == []


def test_cli_merge(qlora, tmp_path, capsys):
    d, _, _ = qlora
    assert cli_merge([str(d/"adapter"), str(tmp_path/"m"), "--base", str(d/"base"), "--strategy", "nf4_roundtrip"]) == 0
    assert cli_merge([str(d/"adapter"), str(tmp_path/"m"), "--base", str(d/"base")]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert cli_merge([str(d/"adapter"), str(tmp_path/"m"), "--base", str(d/"base"), "--overwrite"]) == 0


def test_cli_merge_verifies_with_your_own_probes(qlora, tmp_path, capsys):
    "Issue 28.6: `playbook merge` had no way to pass probes; the book's ticket cases were the only ones."
    d, _, _ = qlora
    probes = tmp_path/"probes.jsonl"
    probes.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"instruction": "Translate to French: good morning", "output": "Bonjour"},
        {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}]) + "\n")
    assert cli_merge([str(d/"adapter"), str(tmp_path/"m"), "--base", str(d/"base"), "--probes", str(probes)]) == 0
    assert json.loads((tmp_path/"m"/"merge_report.json").read_text())["n_probes"] == 2   # yours, not the book's 3
    capsys.readouterr()
    probes.write_text('{"instruction": "no output field"\n')
    assert cli_merge([str(d/"adapter"), str(tmp_path/"m2"), "--base", str(d/"base"), "--probes", str(probes)]) == 2
    err = capsys.readouterr().err
    assert "probes.jsonl" in err and "第 1 行" in err and not (tmp_path/"m2").exists()

def test_base_revision_pins_a_hub_base_by_the_commit_in_the_local_cache(tmp_path, monkeypatch):
    """transformers 5 no longer records `config._commit_hash`; the model card's revision comes from huggingface_hub's cache:
    the snapshot `refs/main` points at. Before appendix F's canary found it, this silently recorded nothing for Hub bases."""
    import types, huggingface_hub.constants as hc
    from playbook_lib.merge import base_revision
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path/"models--Qwen--Qwen2.5-7B-Instruct"
    (repo/"refs").mkdir(parents=True); (repo/"refs"/"main").write_text(sha)
    (repo/"snapshots"/sha).mkdir(parents=True); (repo/"snapshots"/sha/"config.json").write_text("{}")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    assert base_revision(types.SimpleNamespace(name_or_path="Qwen/Qwen2.5-7B-Instruct")) == dict(revision=sha)
