"Serve: start transformers serve on loopback, smoke-test through the openai client, stop with no process left."
import json
from pathlib import Path

import psutil, pytest

from playbook_lib.merge import merge_adapter, random_lora_adapter
from playbook_lib.models import tiny_model
from playbook_lib.serve import (MonitorSummary, RequestMonitor, ServeError, cli_serve, retrain_signals, serve,
                                smoke_test, summarize, vllm_command)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model, tok = tiny_model()
    adapter = random_lora_adapter(model, d/"adapter", r=4)
    assert merge_adapter((model, tok), adapter, d/"release").ok
    return d/"release"


def _gone(pid):
    try: return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return True


def test_serve_smoke_stop(release, tmp_path):
    mon = RequestMonitor(tmp_path/"requests.jsonl")
    with serve(release) as srv:
        pid = srv.proc.pid
        children = [c.pid for c in psutil.Process(pid).children(recursive=True)]
        listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening)
        rep = smoke_test(srv.endpoint, srv.model, n=2, max_tokens=12, monitor=mon)
    assert rep.n == 2 and rep.errors == 0 and rep.ok  # a random tiny model answers garbage, but the path works
    recs = mon.records()
    assert len(recs) == 2 and all(r["completion_tokens"] > 0 and r["latency_s"] > 0 for r in recs)
    assert all(_gone(p) for p in [pid, *children])
    assert srv.startup_s > 0


def test_wrong_model_name_is_an_error(release, tmp_path):
    mon = RequestMonitor(tmp_path/"r.jsonl")
    with serve(release) as srv:
        rep = smoke_test(srv.endpoint, "not-the-model", n=1, max_tokens=4, monitor=mon)
    assert rep.errors == 1 and mon.records()[0]["outcome"] == "error" and "400" in mon.records()[0]["error"]


def test_bad_model_dir_fails_fast_and_cleans_up(tmp_path):
    (tmp_path/"empty").mkdir()
    with pytest.raises(ServeError, match="日志末尾"):
        serve(tmp_path/"empty", timeout=120)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path/"empty") in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_cli_serve_smoke(release, tmp_path, capsys):
    assert cli_serve([str(release), "--smoke", "1", "--monitor", str(tmp_path/"m.jsonl")]) == 0
    assert "冒烟测试" in capsys.readouterr().out
    assert len((tmp_path/"m.jsonl").read_text().splitlines()) == 1


def test_vllm_multi_lora_command():
    cmd = vllm_command("base", 9000, loras={"a": "/x", "b": "/y"})
    assert cmd[:3] == ["vllm", "serve", "base"] and "--enable-lora" in cmd and cmd[-2:] == ["a=/x", "b=/y"]
    assert cmd[cmd.index("--max-loras") + 1] == "2"


def test_print_command_attaches_loras_to_the_base(release, tmp_path, capsys):
    "The multi-LoRA vLLM line serves the base the release was merged from, never the merged model (issue 23, item 9)."
    import shlex
    assert cli_serve([str(release), "--print-command", "--lora", "a=/x", "--lora", "b=/y"]) == 0
    lines = [shlex.split(l) for l in capsys.readouterr().out.splitlines()]
    base = json.loads((release/"merge_report.json").read_text())["base"]
    assert len(lines) == 3 and lines[1][:3] == ["vllm", "serve", str(release)] and "--enable-lora" not in lines[1]
    assert lines[2][:3] == ["vllm", "serve", base] and base != str(release) and lines[2][-2:] == ["a=/x", "b=/y"]
    assert cli_serve([str(release), "--print-command", "--lora", "a=/x", "--base", "org/other"]) == 0
    assert shlex.split(capsys.readouterr().out.splitlines()[2])[2] == "org/other"
    (tmp_path/"bare").mkdir()   # a model directory without merge_report.json: the base must be named
    assert cli_serve([str(tmp_path/"bare"), "--print-command", "--lora", "a=/x"]) == 2
    assert "--base" in capsys.readouterr().err
    assert cli_serve([str(release), "--print-command", "--lora", "no-equals-sign"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err


def test_summary_and_signals():
    recs = [dict(ts=float(i), latency_s=float(i + 1), prompt_tokens=10, completion_tokens=10, outcome="ok", accepted=True) for i in range(10)]
    base = summarize(recs)
    assert base.p50_s == pytest.approx(5.5) and base.p95_s == pytest.approx(9.55) and base.error_rate == 0
    assert base.tokens_per_s == pytest.approx(100/19) and base.acceptance_rate == 1
    bad = [dict(r, outcome="invalid_json", accepted=False) for r in recs[:5]] + [dict(recs[0], outcome="error", accepted=None)]
    sig = retrain_signals(summarize(bad), base)
    assert any("JSON" in s for s in sig) and any("采纳率" in s for s in sig) and any("错误率" in s for s in sig)
    assert retrain_signals(base, base) == []


def test_smoke_cases_in_any_format_grade_text_answers(release, tmp_path, capsys):
    "Issue 28.6: smoke_test parsed every gold answer as a ticket JSON, so a user's own plain-text task died with a KeyError."
    from playbook_lib.serve import grade_answer, smoke_case
    assert grade_answer(" Bonjour\n", "Bonjour") == (None, True)
    assert grade_answer('{"a": 1}', '{ "a":1 }') == (True, True) and grade_answer("not json", '{"a": 1}') == (False, False)
    assert smoke_case({"instruction": "2+2?", "output": "4"})[1] == "4"
    assert smoke_case({"messages": [{"role": "user", "content": "hi"}]}) == ([{"role": "user", "content": "hi"}], None)
    cases = [{"instruction": "Translate to French: good morning", "output": "Bonjour"},
             {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
             {"messages": [{"role": "user", "content": "Say anything."}]}]
    f = tmp_path/"cases.jsonl"
    f.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    with serve(release) as srv:
        rep = smoke_test(srv.endpoint, srv.model, cases=f, max_tokens=4)
    assert rep.n == 3 and rep.errors == 0 and rep.json_valid is None and rep.n_json == 0
    assert rep.n_graded == 2 and rep.exact_match == 0.0   # a random tiny model does not say "Bonjour"
    assert "没有可比的标准答案" in rep._repr_markdown_()
    f.write_text(json.dumps(cases[0]) + "\n" + '{"instruction": "no output"\n')
    assert cli_serve([str(release), "--cases", str(f)]) == 2   # refused before the server starts
    err = capsys.readouterr().err
    assert "cases.jsonl" in err and "第 2 行" in err and "怎么办" in err


def test_models_endpoint_answers_200_on_a_machine_without_a_hub_cache(release, tmp_path, monkeypatch):
    """Issue 28.12: /v1/models returned 500 (CacheNotFound) when the Hugging Face hub cache did not exist yet, so a client's
    `models.list()` start-up check failed. `serve` now creates the cache directory first. The preloaded local model is still
    not listed (transformers serve scans only the hub cache): 05b_serve says so, and this keeps that claim true."""
    import urllib.request
    cache = tmp_path/"no-hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))   # a machine whose Hugging Face cache does not exist yet
    with serve(release) as srv:
        assert urllib.request.urlopen(f"{srv.endpoint}/health", timeout=30).status == 200
        with urllib.request.urlopen(f"{srv.endpoint}/v1/models", timeout=30) as r:
            assert r.status == 200
            listed = [m["id"] for m in json.loads(r.read().decode()).get("data", [])]
    assert cache.is_dir()
    assert srv.model not in listed, "transformers serve now lists preloaded local models: update 05b_serve's note"

def test_hub_cache_follows_huggingface_hubs_variables():
    import os
    import huggingface_hub.constants as C
    from playbook_lib.serve import _hub_cache
    assert _hub_cache({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert _hub_cache({"HF_HOME": "/b"}) == Path("/b/hub")
    assert _hub_cache({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")
    assert _hub_cache(dict(os.environ)) == Path(C.HF_HUB_CACHE).expanduser()   # this process: the same answer as huggingface_hub's
