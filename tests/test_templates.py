"Chapter 3 template checker: token-id parity with the vendors' reference encoders, every issue code, Modelfile round trips."
import copy
import pytest
from playbook_lib.models import load_tokenizer
from playbook_lib.tickets import load_split
from playbook_lib.train import encode_chat
from playbook_lib.templates import (ISSUES, check_chat_template, family_tokenizer, loss_mask_view, parse_modelfile, render_go_template,
                                    render_modelfile, split_turns, thinking_prefill, vendor_encoder)

CONVS = [r["messages"] for r in load_split("train", n=30)]
MULTI = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "第一问"}, {"role": "assistant", "content": "答一"},
         {"role": "user", "content": "第二问 again"}, {"role": "assistant", "content": "答二"}]
TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "查订单状态",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]
CALL = [{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "订单E202611021234还没到"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_order", "arguments": {"order_id": "E202611021234"}}}]},
        {"role": "tool", "content": '{"status": "运输中"}'}, {"role": "assistant", "content": "您的订单在运输中，预计明天送达。"}]

def encode_last_only(tok, messages, max_length=None, tools=None):
    "A common mistake with agent data: train only the final answer, not the turns that call tools."
    return encode_chat(tok, messages, max_length, last_turn_only=True, tools=tools)

def encode_all_with_tools(tok, messages, max_length=None, tools=None):
    ex = encode_chat(tok, messages, max_length, tools=tools); return dict(ex, labels=list(ex["input_ids"]))

THINK = [dict(m, content=f"<think>\n想法{k}\n</think>\n\n{m['content']}") if m["role"] == "assistant" else m for k, m in enumerate(MULTI)]

@pytest.fixture(scope="module")
def smol(): return load_tokenizer("cpu")

@pytest.mark.parametrize("family", ["llama3", "mistral-v3", "qwen2.5"])
def test_token_ids_match_vendor_reference(family):
    tok, ref = family_tokenizer(family), vendor_encoder(family)
    convs = CONVS + ([MULTI[1:], MULTI] if family != "mistral-v3" else [MULTI[1:]])  # v3 + system + multi-turn is not prefix-preserving
    for c in convs: assert encode_chat(tok, c)["input_ids"] == list(ref(c)), c
    assert check_chat_template(tok, convs, facts=family, reference=family).ok

def encode_masking_pad(tok, messages, max_length=None):
    ex = encode_chat(tok, messages, max_length)
    return dict(ex, labels=[-100 if t == tok.pad_token_id else l for t, l in zip(ex["input_ids"], ex["labels"])])

def encode_everything(tok, messages, max_length=None):
    ex = encode_chat(tok, messages, max_length); return dict(ex, labels=list(ex["input_ids"]))

def encode_nothing(tok, messages, max_length=None):
    ex = encode_chat(tok, messages, max_length); return dict(ex, labels=[-100]*len(ex["labels"]))

def encode_text_twice(tok, messages, max_length=None):
    ids = tok(tok.apply_chat_template(messages, tokenize=False))["input_ids"]
    return dict(input_ids=ids, labels=ids, attention_mask=[1]*len(ids))

def encode_without_bos(tok, messages, max_length=None):
    ex = encode_chat(tok, messages, max_length); return {k: v[1:] for k, v in ex.items()}

def test_clean_data_has_no_issues(smol):
    rep = check_chat_template(smol, CONVS, facts="smollm2", modelfile=render_modelfile(smol), stop_tokens=["<|im_end|>", 2])
    assert rep.ok and not rep.issues and len(rep.fractions) == len(CONVS)
    assert all(0.2 < f < 0.5 for f in rep.fractions)

def test_every_issue_code_is_detected(smol):
    llama, qwen3, found = family_tokenizer("llama3"), family_tokenizer("qwen3"), set()
    no_gen = copy.deepcopy(smol); no_gen.chat_template = smol.chat_template.replace("{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}", "")
    edited = copy.deepcopy(smol); edited.chat_template = smol.chat_template.replace("'\n'}}{% endfor %}", "'\n\n'}}{% endfor %}")
    cases = {
        "double_bos": check_chat_template(llama, CONVS[:2], facts="llama3", encode=encode_text_twice),
        "missing_bos": check_chat_template(llama, CONVS[:2], facts="llama3", encode=encode_without_bos),
        "eos_not_trained": check_chat_template(smol, CONVS[:2], encode=encode_masking_pad),
        "no_assistant_tokens": check_chat_template(smol, CONVS[:2], encode=encode_nothing),
        "prompt_tokens_trained": check_chat_template(smol, CONVS[:2], encode=encode_everything),
        "no_generation_prompt": check_chat_template(no_gen, CONVS[:2]),
        "system_role_unsupported": check_chat_template(family_tokenizer("gemma2"), CONVS[:2], facts="gemma2"),
        "system_folded": check_chat_template(family_tokenizer("gemma3"), CONVS[:2], facts="gemma3"),
        "template_not_prefix_preserving": check_chat_template(family_tokenizer("mistral-v3"), [MULTI], facts="mistral-v3"),
        "role_order_invalid": check_chat_template(smol, [[CONVS[0][0], CONVS[0][2], CONVS[0][1]]]),
        "template_mismatch": check_chat_template(smol, CONVS[:2], saved=edited),
        "stop_token_mismatch": check_chat_template(smol, CONVS[:2], stop_tokens=["<|endoftext|>"]),
        "thinking_not_closed": check_chat_template(qwen3, [MULTI[:2] + [{"role": "assistant", "content": "<think>\n想了一半就作答"}]], facts="qwen3"),
        "thinking_in_history": check_chat_template(qwen3, [THINK], facts="qwen3"),
        "date_in_prompt": check_chat_template(family_tokenizer("llama3.2"), CONVS[:2], facts="llama3.2"),
        "tool_call_not_trained": check_chat_template(family_tokenizer("llama3.1"), [{"messages": CALL, "tools": TOOLS}], facts="llama3.1", encode=encode_last_only),
        "tool_result_trained": check_chat_template(family_tokenizer("llama3.1"), [{"messages": CALL, "tools": TOOLS}], facts="llama3.1", encode=encode_all_with_tools),
    }
    for code, rep in cases.items():
        assert code in rep.codes(), (code, rep.codes())
        issue = next(i for i in rep.issues if i.code == code)
        assert issue.severity in ("error", "warning") and issue.message and issue.fix and issue.example is not None
        found.add(code)
    assert found == set(ISSUES)

def test_reference_and_modelfile_mismatch_are_token_level():
    llama = family_tokenizer("llama3")
    wrong_ref = lambda m: vendor_encoder("llama3")(m)[:-1] + [128001]  # <|end_of_text|> where <|eot_id|> belongs
    rep = check_chat_template(llama, CONVS[:3], facts="llama3", reference=wrong_ref)
    assert rep.examples("template_mismatch") == [0, 1, 2] and "不同" in rep.issues[0].detail
    course = 'TEMPLATE """{{ range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n"""\nPARAMETER stop "</s>"'
    assert check_chat_template(llama, CONVS[:3], facts="llama3", modelfile=course).codes() == {"template_mismatch", "stop_token_mismatch"}

@pytest.mark.parametrize("family", ["smollm2", "llama3", "qwen2.5", "gemma2", "phi3"])
def test_render_modelfile_round_trips(family):
    tok = family_tokenizer(family)
    convs = CONVS[:10] if family != "gemma2" else [c[1:] for c in CONVS[:10]]
    mf = render_modelfile(tok, from_="./x.gguf")
    assert parse_modelfile(mf)["from_"] == "./x.gguf" and parse_modelfile(mf)["stop"]
    assert check_chat_template(tok, convs, modelfile=mf).ok

def test_go_template_subset():
    tpl = '{{- if .System }}S={{ .System }};{{ end }}{{ range .Messages }}{{ if eq .Role "user" }}U:{{ .Content }} {{ else if eq .Role "assistant" }}A:{{ .Content }} {{ end }}{{ end -}}\n  END'
    msgs = [{"role": "system", "content": "x"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    assert render_go_template(tpl, msgs) == "S=x;U:a\n\nb A:c END"  # consecutive user turns merged as Ollama does
    with pytest.raises(ValueError, match="不支持"): render_go_template("{{ len .Messages }}", msgs)

def test_loss_mask_views(smol):
    v = loss_mask_view(smol, CONVS[0])
    assert "\x1b[42;30m" in str(v) and "<span" in v._repr_html_()
    assert "".join(t for t, on in v.pieces if on) == CONVS[0][-1]["content"] + "<|im_end|>"


def test_a_missing_reference_package_names_itself_and_the_install_command(tmp_path):
    "Issue 28.10: family_tokenizer('llama3') without llama-models died with a bare ModuleNotFoundError and no install hint."
    import subprocess, sys
    code = ("import sys; sys.modules['llama_models'] = None\n"
            "from playbook_lib.templates import family_tokenizer\n"
            "try: family_tokenizer('llama3', cache=False)\n"
            "except ModuleNotFoundError as e: print(e); print('name', e.name)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PLAYBOOK_CACHE": str(tmp_path)})
    assert "llama_models" in r.stdout and "pip install --no-deps llama-models==0.3.0" in r.stdout and "name llama_models" in r.stdout, r.stdout + r.stderr[-2000:]
    with pytest.raises(ValueError, match="可选：smollm2, llama3"): family_tokenizer("llama-3")


def test_the_install_hint_pins_what_the_checkout_installs():
    from pathlib import Path
    from playbook_lib.templates import REFERENCE_PACKAGES
    pinned = [l.strip() for l in (Path(__file__).parents[1]/"tools/requirements-nodeps.txt").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    assert sorted(pinned) == sorted(REFERENCE_PACKAGES)


def test_the_qwen_reference_encoder_leaves_no_stub_package_behind():
    "Issue 29: importing dashscope's tokenizer without its __init__ left stub `dashscope` modules in sys.modules."
    import subprocess, sys
    code = ("import sys\nfrom playbook_lib.templates import vendor_encoder\n"
            "enc = vendor_encoder('qwen2.5')\nids = enc([{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'ok'}])\n"
            "print(len(ids) > 0, [n for n in sys.modules if n == 'dashscope' or n.startswith('dashscope.')])\n"
            "print(len(enc([{'role': 'user', 'content': 'again'}, {'role': 'assistant', 'content': 'fine'}])) > 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split("\n")[:2] == ["True []", "True"], r.stdout + r.stderr[-2000:]

def test_every_family_in_the_facts_table_stops_and_its_tokens_are_flagged_in_data():
    "Issue 29: end-of-turn tokens come from one facts table (appendix G). Each family's eot must be a stop id for its tokenizer, even where eos is another token, and data must flag its special tokens."
    from playbook_lib.templates import TEMPLATE_FACTS, family_tokenizer, _BUILDERS
    from playbook_lib.models import end_of_turn_ids
    from playbook_lib.data import SPECIAL_LITERALS
    for f in TEMPLATE_FACTS.values():
        for t in {f.bos, f.eos, f.eot} - {None}: assert t in SPECIAL_LITERALS, f"{f.family}: {t} missing from data.SPECIAL_LITERALS"
    checked = []
    for fam in ["smollm2", *_BUILDERS]:
        tok, eot = family_tokenizer(fam), TEMPLATE_FACTS[fam].eot
        assert tok.convert_tokens_to_ids(eot) in end_of_turn_ids(tok), f"{fam}: {eot} is not a stop id"
        if eot != tok.eos_token: checked.append(fam)
    assert {"gemma2", "gemma3", "phi3"} <= set(checked), checked   # families whose end of turn is not the eos (the book's llama3 template sets eos to eot)


def test_qwen3_thinking_template_and_its_traps():
    """Issue 25: Qwen3's hybrid-thinking format. Its added tokens sit at Qwen3's ids; reasoning survives only after the last
    user message; a reply without reasoning gets an empty think block, which is also what enable_thinking=False pre-fills
    (so it is not a missing generation prompt); multi-turn data is not prefix-preserving until it is split per turn and
    only each last turn is trained, and then every turn trains on its own reasoning, as inference renders it."""
    q3, q25 = family_tokenizer("qwen3"), family_tokenizer("qwen2.5")
    assert [q3.convert_tokens_to_ids(t) for t in ("<tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")] == [151657, 151665, 151666, 151667, 151668]
    text = CONVS[0][-1]["content"] + " 订单E202611021234"
    assert q3(text, add_special_tokens=False)["input_ids"] == q25(text, add_special_tokens=False)["input_ids"]   # one BPE vocabulary
    full = q3.apply_chat_template(THINK, tokenize=False)
    assert "想法2" not in full and "想法4" in full and full.count("<think>") == 1          # history reasoning removed
    assert not full.startswith("<|im_start|>system\nYou are")                             # no default system, unlike Qwen2.5
    plain = q3.apply_chat_template(MULTI[1:3], tokenize=False)
    assert plain.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n答一<|im_end|>\n")
    assert thinking_prefill(q3) == "<think>\n\n</think>\n\n" and thinking_prefill(family_tokenizer("qwen2.5")) is None
    assert check_chat_template(q3, CONVS[:3], facts="qwen3", stop_tokens=["<|im_end|>"]).ok   # single-turn tickets: clean
    assert "template_not_prefix_preserving" in check_chat_template(q3, [MULTI], facts="qwen3").codes()   # even without reasoning
    rep = check_chat_template(q3, split_turns(THINK), facts="qwen3", last_turn_only=True)
    assert rep.ok and not rep.issues, rep.codes()
    for k, conv in enumerate(split_turns(THINK)):
        ex = encode_chat(q3, conv, last_turn_only=True)
        trained = q3.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100])
        own = 2 if k == 0 else 4
        assert trained == f"<think>\n想法{own}\n</think>\n\n{conv[-1]['content'].split(chr(10))[-1]}<|im_end|>", trained


def test_llama_3_1_and_3_2_always_write_a_dated_system_block():
    """Issue 25: Hugging Face's Llama 3.1+/3.3 template writes 'Cutting Knowledge Date' and 'Today Date' into a system block
    even without a system message (3.0's and Meta's reference format do not); 3.2's date is the day of rendering."""
    import datetime
    l30, l31, l32 = (family_tokenizer(f) for f in ("llama3", "llama3.1", "llama3.2"))
    conv = CONVS[0][1:]                                                       # no system message
    r31, r32 = (t.apply_chat_template(conv, tokenize=False) for t in (l31, l32))
    head = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: "
    assert r31.startswith(head + "26 Jul 2024\n\n<|eot_id|>") and r32.startswith(head + datetime.date.today().strftime("%d %b %Y"))
    assert "Cutting Knowledge" not in l30.apply_chat_template(conv, tokenize=False)
    assert l32.apply_chat_template(conv, tokenize=False, date_string="26 Jul 2024") == r31   # a fixed date_string: 3.2 renders like 3.1
    assert check_chat_template(l31, CONVS[:3], facts="llama3.1", stop_tokens=["<|eot_id|>"]).ok
    assert check_chat_template(l32, CONVS[:3], facts="llama3.2").codes() == {"date_in_prompt"}
    assert check_chat_template(l30, CONVS[:3], facts="llama3", saved=l31).codes() == {"template_mismatch"}     # trained on 3.0's format
    assert check_chat_template(l31, CONVS[:3], facts="llama3.1", reference="llama3").codes() == {"template_mismatch"}  # Meta's reference


def test_tool_calling_conversations_render_as_each_family_expects_and_train_only_the_assistant():
    """Issue 25: tools (OpenAI format) and tool_calls / tool messages. Qwen3 writes <tool_call> JSON with "arguments" and wraps
    results in <tool_response> inside a user turn; Llama 3.1+ writes {"name", "parameters"} and an ipython turn whose content
    is JSON-encoded (a string result arrives quoted). The tool-calling turn is trained, the tool result is not."""
    from playbook_lib.templates import role_problems
    l31, q3 = family_tokenizer("llama3.1"), family_tokenizer("qwen3")
    r = l31.apply_chat_template(CALL, tools=TOOLS, tokenize=False)
    assert "Environment: ipython" in r and '{"name": "get_order", "parameters": {"order_id": "E202611021234"}}<|eot_id|>' in r
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"status\\": \\"运输中\\"}"<|eot_id|>' in r
    r = q3.apply_chat_template(CALL, tools=TOOLS, tokenize=False)
    assert '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "E202611021234"}}\n</tool_call><|im_end|>' in r
    assert '<|im_start|>user\n<tool_response>\n{"status": "运输中"}\n</tool_response><|im_end|>' in r and "# Tools" in r
    ex = encode_chat(l31, CALL, tools=TOOLS)
    trained = l31.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100])
    assert '{"name": "get_order"' in trained and "运输中\\" not in trained and "预计明天送达" in trained
    assert check_chat_template(l31, [{"messages": CALL, "tools": TOOLS}], facts="llama3.1", stop_tokens=["<|eot_id|>"]).ok
    assert "template_not_prefix_preserving" in check_chat_template(q3, [{"messages": CALL, "tools": TOOLS}], facts="qwen3").codes()
    assert check_chat_template(q3, [{"messages": c, "tools": TOOLS} for c in split_turns(CALL)], facts="qwen3", last_turn_only=True).ok
    assert role_problems(CALL) == [] and role_problems(CALL[:3]) == []          # a sample may end with the call
    assert role_problems(CALL[:3] + CALL[4:]) == ["user / assistant 没有交替"]   # a call without its result
    assert "user / assistant 没有交替" in role_problems(CALL[:2] + CALL[3:])     # a result without a call

def test_a_cached_family_tokenizer_gets_this_versions_template(tmp_path, monkeypatch):
    "The cache holds the vocabulary; before, a tokenizer cached by an older version kept that version's template."
    import playbook_lib.templates as T
    monkeypatch.setattr(T, "cache_root", lambda: tmp_path)
    tok = T.family_tokenizer("llama3.1")
    tok.chat_template = "{{ 'stale' }}"; tok.save_pretrained(tmp_path/"tokenizers"/"llama3.1")
    assert T.family_tokenizer("llama3.1").chat_template == T.CHAT_TEMPLATES["llama3.1"]
