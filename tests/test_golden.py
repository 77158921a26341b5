"Tests of playbook_lib.golden: the committed red-line set, assertions, local and endpoint runs, baselines and the CLI."
import json
from pathlib import Path

import pytest
from playbook_lib.golden import (build_golden_cases, check_assertion, load_golden, score_golden, run_golden, save_report,
                                 load_report, assert_no_regression, cli_golden, case_from_ticket_record, GoldenRegression)
from playbook_lib.judge import ScriptedJudgeServer
from playbook_lib.tickets import data_dir, read_jsonl

CASES = load_golden()
GOLD = [c["reference"] for c in CASES]

def test_committed_cases_match_the_converter(tmp_path):
    rebuilt = build_golden_cases(dest=tmp_path / "g.jsonl")
    assert rebuilt == read_jsonl(data_dir() / "golden_cases.jsonl") and len(rebuilt) == 80
    kinds = {a["type"] for c in rebuilt for a in c["assertions"]}
    assert kinds == {"json_valid", "json_schema", "regex", "not_contains", "max_chars", "equals", "contains"}
    assert any("rubric" in c for c in rebuilt) and all(c["tags"] for c in rebuilt)

def test_gold_answers_pass_and_each_assertion_can_fail():
    assert score_golden(CASES, GOLD).pass_rate == 1.0
    g = json.loads(GOLD[1])
    ok = lambda a, out: check_assertion(a, out)[0]
    assert not ok({"type": "json_valid"}, "好的，工单如下：{")
    assert not ok({"type": "json_schema", "schema": "ticket.schema.json"}, json.dumps({**g, "intent": "chat"}))
    assert not ok({"type": "regex", "pattern": r"^\s*\{"}, "工单：" + GOLD[1])
    assert not ok({"type": "not_contains", "value": "```"}, "```json\n" + GOLD[1] + "\n```")
    assert not ok({"type": "max_chars", "value": 10}, GOLD[1])
    assert not ok({"type": "equals", "path": "customer.name", "value": "nobody"}, GOLD[1])
    assert not ok({"type": "equals", "path": "no.such", "value": 1}, GOLD[1])
    assert ok({"type": "contains", "path": "items", "value": {"name": g["items"][0]["name"]}}, GOLD[1])
    assert not ok({"type": "contains", "path": "items", "value": {"name": "不存在的商品"}}, GOLD[1])
    assert ok({"type": "equals", "path": "items.0.qty", "value": g["items"][0]["qty"]}, GOLD[1])

def test_regressions_listed_case_by_case(tmp_path):
    base = score_golden(CASES, GOLD, "base")
    broken = list(GOLD); broken[3] = broken[3].replace('"priority":"', '"priority":"x')
    rep = score_golden(CASES, broken, "new", baseline=base)
    assert rep.regressions == [CASES[3]["id"]] and rep.fixed == []
    with pytest.raises(AssertionError, match=CASES[3]["id"]): assert_no_regression(rep, base)
    assert_no_regression(rep, base, max_drop=0.02)
    with pytest.raises(AssertionError): assert_no_regression(rep, base, max_drop=0.02, max_regressions=0)
    p = save_report(rep, tmp_path)
    assert p.exists() and p.with_suffix(".md").exists() and not list(tmp_path.glob(".*"))  # no temp files left
    again = load_report(p)
    assert again.regressions == rep.regressions and again.pass_rate == rep.pass_rate
    assert "new" in rep._repr_markdown_() and CASES[3]["id"] in rep._repr_markdown_()

def test_rubric_is_checked_only_with_a_judge():
    i = next(i for i, c in enumerate(CASES) if c.get("rubric"))
    assert score_golden(CASES[i:i+1], GOLD[i:i+1], rubric_judge=lambda c, o: False).pass_rate == 0.0
    assert score_golden(CASES[i:i+1], GOLD[i:i+1]).pass_rate == 1.0

def _gold_server(wrong=()):
    by_msg = {c["messages"][-1]["content"]: (c["id"], c["reference"]) for c in CASES}
    def respond(messages):
        cid, ref = by_msg[messages[-1]["content"]]
        return ref.replace('"intent":"', '"intent":"x') if cid in wrong else ref
    return ScriptedJudgeServer(respond=respond)

def test_run_golden_against_an_endpoint(tmp_path):
    with _gold_server() as srv: rep = run_golden(srv.url, limit=12, name="api", out_dir=tmp_path)
    assert rep.n == 12 and rep.pass_rate == 1.0 and srv.requests == 12
    assert (tmp_path / "api.json").exists() and (tmp_path / "api.md").exists()
    assert sum(n for _, n in rep.by_tag.values()) == sum(len(c["tags"]) for c in CASES[:12])

def test_run_golden_local_model_batched():
    from playbook_lib.models import tiny_model
    model, tok = tiny_model()
    rep = run_golden((model, tok), limit=4, max_new_tokens=4, batch_size=4, name="tiny")
    assert rep.n == 4 and rep.pass_rate == 0.0 and all(isinstance(c["output"], str) for c in rep.cases)

def test_cli_golden_exits_nonzero_on_regression(tmp_path, capsys):
    out = tmp_path / "reports"
    with _gold_server() as srv:
        assert cli_golden(["--endpoint", srv.url, "--limit", "10", "--out", str(out), "--name", "v1"]) == 0
    bad = {CASES[0]["id"], CASES[5]["id"]}
    with _gold_server(wrong=bad) as srv:
        args = ["--endpoint", srv.url, "--limit", "10", "--out", str(out), "--name", "v2", "--baseline", str(out / "v1.json")]
        assert cli_golden(args) == 1
        assert "退步" in capsys.readouterr().out
        assert cli_golden(args + ["--max-drop", "0.2"]) == 0
    assert sorted(json.loads((out / "v2.json").read_text())["regressions"]) == sorted(bad)

def test_the_red_line_holds_under_python_O(tmp_path):
    "Before: plain `assert`, so `python -O` skipped the gate and a regression passed (issue 28.7)."
    import subprocess, sys
    base = score_golden(CASES, GOLD, "base"); broken = list(GOLD); broken[3] = broken[3].replace('"priority":"', '"priority":"x')
    save_report(base, tmp_path); save_report(score_golden(CASES, broken, "new"), tmp_path)
    code = ("import sys; from playbook_lib.golden import assert_no_regression\n"
            f"try: assert_no_regression({str(tmp_path/'new.json')!r}, {str(tmp_path/'base.json')!r})\n"
            "except AssertionError: sys.exit(1)\n")
    assert subprocess.run([sys.executable, "-O", "-c", code]).returncode == 1

def test_a_limited_run_is_compared_with_the_same_cases_of_the_baseline():
    "Before: --limit compared the first N cases' pass rate with the whole baseline's (issue 28.7)."
    broken = list(GOLD)
    for i in range(10, 30): broken[i] = "不是工单"                 # the baseline fails 20 cases outside the first 10
    base = score_golden(CASES, broken, "base")
    first10 = score_golden(CASES[:10], [GOLD[i] for i in range(10)], "limited")
    assert assert_no_regression(first10, base).count("只比本次跑的 10 题") == 1   # passes, and says what it compared
    worse = score_golden(CASES[:10], ["不是工单"] + GOLD[1:10], "limited-worse")
    with pytest.raises(AssertionError, match="只比本次跑的 10 题"): assert_no_regression(worse, base)   # before: 90% > 75%, passed

def test_cli_exit_codes_tell_a_crash_from_a_regression(tmp_path):
    import subprocess, sys
    playbook = str(Path(sys.executable).parent/"playbook")
    r = subprocess.run([playbook, "golden", "--model", str(tmp_path/"no-such-model"), "--limit", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode not in (0, 1), (r.returncode, r.stderr[-1500:])   # 1 is reserved for a regression

def test_a_crash_exits_70_not_the_regression_code_1(tmp_path, monkeypatch, capsys):
    """Issue 28.7: before, a bug inside a subcommand and a golden regression both exited 1, so CI could not tell them apart.
    A subcommand module whose function has a bug goes through the real `main`: 70 and the traceback. (A regression's 1 is
    test_cli_golden_exits_nonzero_on_regression.)"""
    from playbook_lib import cli
    (tmp_path/"boom_cmd.py").write_text("def cli_boom(argv):\n    return {}['missing']   # a bug, not a user error\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "boom", ("boom_cmd", "cli_boom", "test"))
    assert cli.main(["boom"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'missing'" in err
    assert "70" in cli.usage() and "1 检查没通过" in cli.usage()   # the codes are documented where `playbook -h` shows them

def test_a_relative_json_schema_resolves_against_the_cases_file(tmp_path):
    "Issue 28.7: a user's cases file names its schema relative to itself (it resolved against the package's data/ before)."
    (tmp_path/"mine.schema.json").write_text(json.dumps({"type": "object", "required": ["sentiment"]}))
    case = dict(id="c1", tags=["mine"], messages=[{"role": "user", "content": "great battery"}],
                assertions=[{"type": "json_schema", "schema": "mine.schema.json"}])
    cases = tmp_path/"cases.jsonl"; cases.write_text(json.dumps(case, ensure_ascii=False) + "\n")
    good = run_golden(lambda convs: ['{"sentiment": "positive"}']*len(convs), str(cases), name="good")
    bad = run_golden(lambda convs: ['{"aspect": "battery"}']*len(convs), cases, name="bad")
    assert (good.passed, bad.passed) == (1, 0)
    # the bundled schema is still found by its name from anywhere, and a schema that is nowhere is named with where it was looked for
    bundled = dict(case, assertions=[{"type": "json_schema", "schema": "ticket.schema.json"}])
    assert run_golden(lambda convs: ["{}"], [bundled], base=tmp_path).n == 1
    missing = dict(case, assertions=[{"type": "json_schema", "schema": "nowhere.schema.json"}])
    with pytest.raises(FileNotFoundError, match="nowhere.schema.json.*找过"): run_golden(lambda convs: ["{}"], [missing], base=tmp_path)

def test_the_gate_message_says_a_rise_is_a_rise():
    "Before: a pass rate that rose by 2.5 points read '下降 -2.5%' (chapter 6's v2 gate); the change is in percentage points."
    broken = list(GOLD); broken[0] = broken[1] = "不是工单"
    worse, base = score_golden(CASES, broken, "worse"), score_golden(CASES, GOLD, "base")
    better = score_golden(CASES, [GOLD[0], "不是工单"] + GOLD[2:], "better")
    up = assert_no_regression(better, worse, max_regressions=1)
    assert "上升 " in up and "个百分点" in up and "下降 -" not in up, up
    with pytest.raises(GoldenRegression, match="下降 [0-9.]+ 个百分点，容忍下降 0.0 个百分点"): assert_no_regression(worse, base)
    assert "持平" in assert_no_regression(base, base)
