"Chapter 3 data checks: the committed dirty dataset, bad input, cleaning, splitting, and `playbook check-data`."
import json, subprocess, sys
from pathlib import Path
import pytest
from playbook_lib.models import load_tokenizer
from playbook_lib.tickets import data_dir, load_split
from playbook_lib.data import (clean, find_pii, from_messages, id_card_valid, lint, luhn_valid, make_dirty, mask_pii, read_examples,
                               split_examples, to_messages, DATA_CODES, DataInputError)

DATA = data_dir()
HELD_OUT = {n: load_split(n) for n in ("val", "test", "golden")}

@pytest.fixture(scope="module")
def dirty_report():
    exs, problems = read_examples(DATA/"dirty.jsonl")
    rep = lint(exs, tokenizer=load_tokenizer("cpu"), schema=DATA/"ticket.schema.json", others=HELD_OUT, input_problems=problems)
    return exs, rep

def test_committed_dirty_file_is_reproducible():
    lines, manifest = make_dirty(seed=0)
    assert b"\n".join(lines) + b"\n" == (DATA/"dirty.jsonl").read_bytes()
    assert json.loads((DATA/"dirty.manifest.json").read_text())["planted"] == manifest
    assert {m["expect"] for m in manifest if m["expect"]} >= set(DATA_CODES) | {"bom", "wrong_encoding", "malformed_json", "missing_fields"}

def test_every_planted_problem_is_found_and_nothing_else(dirty_report):
    exs, rep = dirty_report
    manifest = json.loads((DATA/"dirty.manifest.json").read_text())["planted"]
    found = {(f.src, f.code) for f in rep.findings} | {(f"dirty.jsonl:{p.line}", p.code) for p in rep.input_problems}
    missed = [m for m in manifest if m["expect"] and (f"dirty.jsonl:{m['line']}", m["expect"]) not in found]
    assert missed == []
    negatives = {f"dirty.jsonl:{m['line']}" for m in manifest if not m["expect"]}
    assert not [x for x in found if x[0] in negatives]           # invalid ID / card numbers, other formats: not flagged
    planted = {f"dirty.jsonl:{m['line']}" for m in manifest}
    assert not [f for f in rep.findings if f.severity == "error" and f.src not in planted]  # clean rows carry no errors
    assert not rep.ok

def test_pii_is_masked_in_reports(dirty_report):
    _, rep = dirty_report
    pii = [f for f in rep.findings if f.code == "pii"]
    assert pii and all("****" in f.detail or "***@" in f.detail or "*"*11 in f.detail for f in pii)
    raw = (DATA/"dirty.jsonl").read_text(encoding="utf-8", errors="replace")
    import re
    for f in pii:
        for digits in re.findall(r"\d{11,}", f.detail): assert digits not in raw

def test_validators():
    assert id_card_valid("11010519491231002X") and not id_card_valid("110105194912310021")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert [k for k, *_ in find_pii("电话+86 138-1234-5678 订单E202611021234 SKU-12345")] == ["手机号"]

def test_format_round_trips():
    msgs = load_split("train", 1)[0]["messages"]
    for fmt in ("messages", "sharegpt", "alpaca", "dolly"): assert to_messages(from_messages(msgs, fmt)) == msgs

def test_bad_input_is_named_counted_and_strict_fails(tmp_path):
    f = tmp_path/"in.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps({"instruction": "q", "output": "a"}).encode() + b"\n{bad\n"
                  + json.dumps({"instruction": "退款", "output": "好"}, ensure_ascii=False).encode("gbk") + b"\n\xff\xfe\xfa\n" + b'{"x": 1}\n')
    exs, probs = read_examples(f)
    assert [(p.line, p.code, p.action) for p in probs] == [(1, "bom", "repaired"), (2, "malformed_json", "dropped"),
        (3, "wrong_encoding", "repaired"), (4, "wrong_encoding", "dropped"), (5, "missing_fields", "dropped")]
    assert [e["src"] for e in exs] == ["in.jsonl:1", "in.jsonl:3"] and exs[1]["messages"][0]["content"] == "退款"
    with pytest.raises(DataInputError, match="in.jsonl:1"): read_examples(f, strict=True)

def test_clean_accounts_for_every_row(dirty_report, tmp_path):
    exs, rep = dirty_report
    res = clean(exs, rep, out=tmp_path/"kept.jsonl", rejects=tmp_path/"rejects.jsonl")
    kept = [json.loads(l) for l in (tmp_path/"kept.jsonl").read_text().splitlines()]
    rejects = [json.loads(l) for l in (tmp_path/"rejects.jsonl").read_text().splitlines()]
    assert len(kept) + sum(r["id"] is not None for r in rejects) == len(exs)
    assert sum(r["id"] is None for r in rejects) == len(rep.input_problems)
    assert all(r["reasons"] for r in rejects) and not list(tmp_path.glob("*.tmp"))
    again = lint(res.kept, tokenizer=load_tokenizer("cpu"), schema=DATA/"ticket.schema.json", others=HELD_OUT)
    assert again.errors == []

def test_split_is_deterministic_and_keeps_clusters_together():
    train = load_split("train")[:400]
    a, b = split_examples(train, seed=7), split_examples(list(reversed(train)), seed=7)
    assert {k: sorted(e["id"] for e in v) for k, v in a.items()} == {k: sorted(e["id"] for e in v) for k, v in b.items()}
    twin = json.loads(json.dumps(train[5])); twin["id"] = "twin"; twin["messages"][1]["content"] = "亲，" + twin["messages"][1]["content"] + "谢谢"
    where = {e["id"]: k for k, v in split_examples(train + [twin], seed=7).items() for e in v}
    assert where["twin"] == where[train[5]["id"]]

def _cli(*args, cwd=None):
    code = "import sys; from playbook_lib.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "check-data", *args], capture_output=True, text=True, cwd=cwd, timeout=300)

def test_cli_reports_both_and_exits_nonzero_on_dirty(tmp_path):
    r = _cli(str(DATA/"dirty.jsonl"), "--model", "cpu", "--schema", str(DATA/"ticket.schema.json"), "--rejects", str(tmp_path/"rej.jsonl"),
             "--clean", str(tmp_path/"clean.jsonl"), "--show-mask", "0")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "数据检查" in r.stdout and "模板检查" in r.stdout and "dirty.jsonl:160" in r.stdout and "\x1b[42;30m" in r.stdout
    rej = [json.loads(l) for l in (tmp_path/"rej.jsonl").read_text().splitlines()]
    assert {"dirty.jsonl:160", "dirty.jsonl:184"} <= {r["src"] for r in rej}

def test_cli_passes_clean_data_and_fails_strict(tmp_path):
    ok = _cli(str(DATA/"train.jsonl"), "--model", "cpu", "--schema", str(DATA/"ticket.schema.json"), "--rejects", str(tmp_path/"r.jsonl"), "--max-examples", "30")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    strict = _cli(str(DATA/"dirty.jsonl"), "--strict", "--rejects", str(tmp_path/"r2.jsonl"))
    assert strict.returncode == 2 and "dirty.jsonl:1" in strict.stderr
    bad_model = _cli(str(DATA/"train.jsonl"), "--model", "no-such-model", "--rejects", str(tmp_path/"r3.jsonl"))
    assert bad_model.returncode == 2 and "--model" in bad_model.stderr

# --- issue 28: a user's own templated task -------------------------------------------------------------------------
TEMPLATE = "Extract the aspect and sentiment from the review as one-line JSON."
ASPECTS = ["battery", "screen", "keyboard", "camera", "speaker", "charger", "trackpad", "hinge", "fan", "webcam"]
MOODS = ["great", "terrible", "okay", "amazing", "awful", "fine", "poor", "excellent", "decent", "bad", "superb", "weak", "solid", "flimsy", "sturdy"]

def templated_rows():
    "150 clean alpaca rows that share one instruction: what a user's own task often looks like."
    return [{"instruction": TEMPLATE, "input": f"The {a} is {m}.", "output": json.dumps({"aspect": a, "sentiment": m})} for a in ASPECTS for m in MOODS]

def test_clean_keeps_a_clean_templated_dataset(tmp_path):
    rows = templated_rows()
    rep = lint(rows, name="aspects.jsonl")
    res = clean(rows, rep, out=tmp_path/"kept.jsonl", rejects=tmp_path/"rejects.jsonl")
    assert rep.ok and len(res.kept) == 150 and res.rejects == []      # before: 1 of 150 kept, report ok, exit 0
    assert sum(res.warned.values()) == len([f for f in rep.findings if f.severity == "warning"])  # warnings are reported
    assert rep.stats["near_duplicates"]["clustered"] < 30            # before: one cluster of all 150

def test_near_duplicates_do_not_chain_and_report_their_real_similarity():
    from playbook_lib.data import leader_clusters, clusters_from_pairs, jaccard
    chain = [(0, 1, .8), (1, 2, .8), (2, 3, .8)]
    assert clusters_from_pairs(4, chain) == [0, 0, 0, 0] and leader_clusters(4, chain) == [0, 0, 2, 2]
    rep = lint(templated_rows())
    for f in rep.flagged("near_duplicate"):
        d = next(x for x in rep.findings if x.index == f and x.code == "near_duplicate").detail
        assert float(d.split("Jaccard ")[1].split()[0]) >= 0.65, d   # before: "Jaccard 0.52" under a 0.65 threshold

def test_leak_into_alpaca_data_is_caught():
    g = load_split("golden", 1)[0]
    rows = templated_rows()[:40] + [{"instruction": TEMPLATE, "input": g["messages"][1]["content"], "output": g["messages"][2]["content"]}]
    rep = lint(rows, others={"golden": [g]})
    assert rep.flagged("leakage") == [40]     # before: the shared instruction diluted Jaccard to ~0.6 and it passed

def test_clean_refuses_to_destroy_a_dataset(tmp_path):
    from playbook_lib.data import CleanError
    rows = [{"instruction": TEMPLATE, "input": f"Review {i}: the battery is great, really great.",   # 149 true near-duplicates
             "output": json.dumps({"aspect": "battery", "sentiment": "great"})} for i in range(150)]
    rep = lint(rows)
    with pytest.raises(CleanError, match=r"149/150"):
        clean(rows, rep, out=tmp_path/"kept.jsonl", rejects=tmp_path/"rejects.jsonl", drop=["near_duplicate"])
    assert not list(tmp_path.iterdir())                                 # nothing written
    assert len(clean(rows, rep, drop=["near_duplicate"], max_drop=1.0).kept) == 1   # asked for explicitly: allowed
    with pytest.raises(ValueError, match="near_dup"): clean(rows, rep, drop=["near_dup"])

def test_check_data_cli_keeps_warnings_and_fails_loudly_on_mass_drop(tmp_path):
    f = tmp_path/"aspects.jsonl"
    f.write_text("".join(json.dumps({"instruction": TEMPLATE, "input": f"Review {i}: the battery is great, really great.",
                                     "output": json.dumps({"aspect": "battery", "sentiment": "great"})}) + "\n" for i in range(150)))
    run = lambda *a: subprocess.run([str(Path(sys.executable).parent/"playbook"), "check-data", str(f), "--model", "cpu", *a],
                                    capture_output=True, text=True, timeout=300)
    r = run("--against")
    assert r.returncode == 0 and "保留 150 条" in r.stdout, r.stdout[-1500:] + r.stderr[-1500:]
    r = run("--against", "--drop", "near_duplicate", "--clean", str(tmp_path/"out.jsonl"))
    assert r.returncode == 2 and "149/150" in r.stderr and "--max-drop" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"out.jsonl").exists()


def test_pii_outside_mainland_china_is_found_and_masked():
    "Issue 28.12: a US phone number and an SSN went through `lint` unflagged: the patterns were China-only."
    text = "Reach me at (415) 555-2671 or +44 20 7946 0958, SSN 123-45-6789."
    assert [k for k, *_ in find_pii(text)] == ["电话（北美）", "电话（国际）", "SSN（美国）"]
    masked = mask_pii(text)
    assert "555-2671" not in masked and "7946" not in masked and "123-45" not in masked and masked.endswith("***-**-6789.")
    # never issued, or not a phone: dates, order numbers, amounts
    assert find_pii("666-12-3456 000-12-3456 123-00-4567 shipped 2026-11-02, order E202611021234, 12-34-5678") == []
    rep = lint([{"messages": [{"role": "user", "content": "My SSN is 123-45-6789, fix my refund"},
                              {"role": "assistant", "content": "OK"}]}])
    assert [f.code for f in rep.findings if f.severity == "error"] == ["pii"] and "6789" in rep.findings[0].detail

TOOL_SCHEMAS = [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}]

def write_tool_records(tmp_path, n=4):
    "A JSONL file of tool-calling records (OpenAI format: tools, tool_calls with empty content, a structured tool result)."
    import json
    def rec(i): return {"tools": TOOL_SCHEMAS, "messages": [
        {"role": "user", "content": f"订单E20261102{i:04d}还没到，帮我查一下物流到哪了"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "get_order", "arguments": {"order_id": f"E20261102{i:04d}"}}}]},
        {"role": "tool", "content": {"status": ["运输中", "已签收", "待揽收"][i % 3], "city": f"城市{i}"}},
        {"role": "assistant", "content": f"第 {i} 单的最新状态已经查到，我把详情发给您。"}]}
    src = tmp_path/"tools.jsonl"; src.write_text("".join(json.dumps(rec(i), ensure_ascii=False) + "\n" for i in range(n)))
    return src, TOOL_SCHEMAS

def test_tool_calling_records_keep_their_calls_and_schemas_through_check_and_clean(tmp_path):
    """Issue 25: to_messages kept only role and content, so an assistant's tool_calls vanished and its empty content was an
    error; the record's `tools` were dropped by read_examples and by the cleaned output."""
    import json
    from playbook_lib.data import read_examples, lint, clean
    src, tools = write_tool_records(tmp_path)
    exs, problems = read_examples(src)
    assert not problems and all(e["tools"] == tools and e["messages"][1]["tool_calls"] for e in exs)
    rep = lint(exs)
    assert not [f for f in rep.findings if f.code in ("invalid_message", "empty_content", "role_order_invalid")], rep.findings
    res = clean(exs, rep, out=tmp_path/"clean.jsonl", rejects=tmp_path/"rej.jsonl")
    back = [json.loads(l) for l in (tmp_path/"clean.jsonl").read_text().splitlines()]
    assert len(back) == len(res.kept) == 4 and all(b["tools"] == tools and b["messages"][1]["tool_calls"] for b in back)
