"GGUF export (chapter 5c): llama.cpp's own converter and quantizer, token-id parity with training, traps that must be caught."
import json, shutil
from pathlib import Path

import pytest

from playbook_lib.gguf import (GGUFError, check_gguf, cli_gguf, convert_to_gguf, export_gguf, gguf_encoder, gguf_facts,
                               runtime_commands, serve_gguf)
from playbook_lib.merge import merge_adapter, probe_conversations, random_lora_adapter
from playbook_lib.models import tiny_model
from playbook_lib.serve import smoke_test
from transformers import AutoTokenizer

CONVS = probe_conversations(3)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    model, tok = tiny_model()
    assert merge_adapter((model, tok), random_lora_adapter(model, d/"adapter", r=4), d/"release").ok
    return d/"release"


@pytest.fixture(scope="module")
def exported(release):
    return export_gguf(release, release.with_name("release-gguf"), quants=("f16", "q8_0"), modelfile_quant="q8_0")


def _with_template(release, dest, old, new, special=()):
    "A copy of `release` whose chat template has `old` replaced by `new` (and `special` made special tokens); (dir, its tokenizer)."
    shutil.copytree(release, dest)
    tok = AutoTokenizer.from_pretrained(release)
    assert old in tok.chat_template
    tok.chat_template = tok.chat_template.replace(old, new)
    if special: tok.add_special_tokens({"additional_special_tokens": list(special)})
    tok.save_pretrained(dest)
    return dest, AutoTokenizer.from_pretrained(dest)


def test_export_writes_checked_files_and_a_modelfile(exported, release):
    out = Path(exported.out_dir)
    assert exported.ok and set(exported.files) == {"f16", "q8_0"}
    for q, r in exported.files.items():
        assert (out/r["file"]).stat().st_size == r["bytes"] and r["errors"] == [] and r["template_same"]
    assert exported.files["q8_0"]["bytes"] < exported.files["f16"]["bytes"]
    assert f"FROM ./{exported.files['q8_0']['file']}" in (out/"Modelfile").read_text()
    assert json.loads((out/"gguf_report.json").read_text())["files"]["q8_0"]["file"] == exported.files["q8_0"]["file"]
    assert not list(out.parent.glob(".release-gguf.*")) and not list(out.glob("*.part"))   # nothing left of the staging


def test_gguf_renders_training_ids_and_stops_on_end_of_turn(exported, release):
    tok, f = AutoTokenizer.from_pretrained(release), gguf_facts(exported.path("q8_0"))
    enc = gguf_encoder(exported.path("q8_0"))
    for c in CONVS:
        assert enc(c) == tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
    assert "<|im_end|>" in f.eog and f.chat_template == tok.chat_template and f.architecture == "llama"


def test_wrong_template_is_template_mismatch_and_is_not_published(release, tmp_path):
    wrong, _ = _with_template(release, tmp_path/"wrong", "'<|im_end|>' + ", "'<|endoftext|>' + ")
    rep = check_gguf(AutoTokenizer.from_pretrained(release), convert_to_gguf(wrong, tmp_path/"wrong.gguf"), CONVS)
    assert "template_mismatch" in [r["code"] for r in rep.rows()]
    with pytest.raises(GGUFError, match="没有发布"):   # checked against the tokenizer training used, not the directory's own
        export_gguf(wrong, tmp_path/"wrong-gguf", quants=("f16",), modelfile_quant="f16", training_tokenizer=release)
    assert not (tmp_path/"wrong-gguf").exists() and not list(tmp_path.glob(".wrong-gguf.*"))


def test_end_of_turn_llama_cpp_does_not_stop_on_is_stop_token_mismatch(release, tmp_path):
    # training made an existing token a special end-of-turn marker; llama.cpp does not treat it as end-of-generation:
    # file and training render the same ids, yet a server would run past the turn
    custom, tok = _with_template(release, tmp_path/"custom", "'<|im_end|>' + ", "'<file_sep>' + ", special=["<file_sep>"])
    f = convert_to_gguf(custom, tmp_path/"custom.gguf")
    assert "<file_sep>" not in gguf_facts(f).eog
    codes = [r["code"] for r in check_gguf(tok, f, CONVS).rows()]
    assert "stop_token_mismatch" in codes and "template_mismatch" not in codes


def test_export_refuses_what_it_cannot_do(release, exported, tmp_path):
    with pytest.raises(GGUFError, match="已存在"): export_gguf(release, exported.out_dir)
    with pytest.raises(GGUFError, match="config.json"): convert_to_gguf(tmp_path, tmp_path/"x.gguf")
    with pytest.raises(GGUFError, match="不支持的量化类型"): export_gguf(release, tmp_path/"q", quants=("q3_x",))
    assert not (tmp_path/"x.gguf").exists() and not (tmp_path/"x.gguf.part").exists()


def test_commands_name_the_exported_files(exported, release):
    cmds, f = runtime_commands(exported, "q8_0"), exported.path("q8_0")
    assert f.exists() and str(f) in cmds["llama-cpp-python"] and str(f) in cmds["llama-server"] and str(f) in cmds["vllm"]
    assert f"--tokenizer {release}" in cmds["vllm"] and cmds["ollama"].startswith(f"cd {exported.out_dir} && ollama create release ")


def test_served_by_llama_cpp_through_the_openai_client(exported):
    with serve_gguf(exported.path("q8_0")) as srv:
        rep = smoke_test(srv.endpoint, srv.model, n=2, max_tokens=8, extra_body={"repeat_penalty": 1.0})   # the server accepts it
    assert rep.n == 2 and rep.errors == 0 and all(isinstance(o, str) for o in rep.outputs)
    assert srv.proc.poll() is not None   # stopped with the with-block


def test_cli_exports_and_fails_on_a_bad_directory(release, tmp_path, capsys):
    assert cli_gguf([str(release), "--out", str(tmp_path/"c"), "--quant", "f16"]) == 0
    assert "已写出" in capsys.readouterr().out and (tmp_path/"c"/"release-f16.gguf").exists()
    with pytest.raises(GGUFError, match="config.json"): cli_gguf([str(tmp_path), "--out", str(tmp_path/"d"), "--quant", "f16"])
