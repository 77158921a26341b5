"Protocol tests of playbook_lib.judge against a scripted OpenAI-compatible judge on loopback."
import csv, json, os, subprocess, sys, time
from pathlib import Path

import pytest
from playbook_lib.judge import (ScriptedJudgeServer, pairwise_judge, parse_verdict, calibrate, cohen_kappa, wilson_ci,
                                export_blind_test, import_blind_test, JudgeCache, cli_judge)

N = 24
ITEMS = [f"问题 {i}：请给出工单" for i in range(N)]
TRUTH = [i % 3 != 0 for i in range(N)]  # A is better on 2/3 of the items
A = [("good " if t else "bad ") + f"answer a{i}" + "!" * (i % 4) for i, t in enumerate(TRUTH)]
B = [("bad " if t else "good ") + f"answer b{i}" for i, t in enumerate(TRUTH)]

def marker_oracle(ref, a, b):
    ga, gb = a.startswith("good"), b.startswith("good")
    return "A" if ga and not gb else "B" if gb and not ga else "C"

@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path, monkeypatch):
    "The default judge cache lives under $PLAYBOOK_CACHE: never the user's own during tests."
    monkeypatch.setenv("PLAYBOOK_CACHE", str(tmp_path/"user-cache"))

def judge(srv, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("cache", False)   # these scripted judges differ in behaviour, not in model name: each asks afresh
    return pairwise_judge(ITEMS, A, B, endpoint=srv.url, model="scripted", **kw)

def test_position_biased_judge_gives_all_ties():
    with ScriptedJudgeServer(verdict="first") as srv: r = judge(srv)
    assert (r.wins, r.ties, r.losses, r.invalid) == (0, N, 0, 0)
    assert r.position_consistency == 0.0 and r.win_rate == 0.5
    assert srv.requests == 2 * N  # both orders, no re-asks

def test_oracle_judge_gives_true_win_rate():
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv: r = judge(srv, concurrency=4)
    assert r.win_rate == pytest.approx(sum(TRUTH) / N)
    assert (r.wins, r.losses, r.ties) == (sum(TRUTH), N - sum(TRUTH), 0)
    assert r.position_consistency == 1.0
    assert r.ci[0] < r.win_rate < r.ci[1]

def test_always_tie_and_longer_judges():
    with ScriptedJudgeServer(verdict="tie") as srv: r = judge(srv)
    assert r.ties == N and r.position_consistency == 1.0 and r.length_preference is None
    with ScriptedJudgeServer(verdict="longer") as srv: r = judge(srv)
    assert r.length_preference == 1.0

@pytest.mark.parametrize("malformed,fail", [(0.3, 0.0), (0.0, 0.3), (0.3, 0.3)])
def test_faults_never_lose_or_duplicate_pairs(tmp_path, malformed, fail):
    cache = tmp_path / "cache.jsonl"
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle, malformed=malformed, fail=fail, seed=1) as srv:
        # retries=8: with 30% failures and the default 5 retries, one of ~60 requests exhausts them in about one run in 25
        # (which thread draws which failure varies), and a pair that failed is rightly not cached, so the re-run below would pay
        r = judge(srv, cache=cache, retries=8)
        assert sorted(p["i"] for p in r.pairs) == list(range(N))
        assert all(p["outcome"] in ("a", "b", "tie", "invalid") for p in r.pairs)
        assert r.wins + r.ties + r.losses + r.invalid == N
        judged = [p for p in r.pairs if p["outcome"] != "invalid"]
        assert all(p["outcome"] == ("a" if TRUTH[p["i"]] else "b") for p in judged)  # never a guessed verdict
        if fail: assert r.usage.retries > 0
        if malformed:
            assert srv.requests > 2 * N and r.invalid < N
            bad = [p for p in r.pairs if p["outcome"] == "invalid"]
            assert all(p["reasons"]["ab"] and p["reasons"]["ba"] for p in bad)  # reasons kept
        keys = [json.loads(l)["key"] for l in cache.read_text().splitlines()]
        assert len(keys) == len(set(keys))
        before = srv.requests
        r2 = judge(srv, cache=cache, retries=8)
        assert srv.requests == before and r2.usage.requests == 0  # a re-run costs nothing
        assert [p["outcome"] for p in r2.pairs] == [p["outcome"] for p in r.pairs]

def test_a_failed_request_is_not_cached_and_a_rerun_asks_again(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle, fail=1.0) as srv: r = judge(srv, cache=cache, retries=1)
    assert r.invalid == N and r.usage.retries > 0
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv: r2 = judge(srv, cache=cache)
    assert r2.invalid == 0 and r2.usage.requests == 2 * N and r2.usage.cache_hits == 0

def test_replies_are_cached_by_default_in_the_user_cache_dir(tmp_path):
    "Issue 28.8: a re-run without a cache argument used to pay for every request again."
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv:
        r1 = pairwise_judge(ITEMS, A, B, endpoint=srv.url, model="scripted", api_key="sk-secret-456")
        r2 = pairwise_judge(ITEMS, A, B, endpoint=srv.url, model="scripted")
        assert (r1.usage.requests, r2.usage.requests, r2.usage.cache_hits) == (2 * N, 0, 2 * N) and srv.requests == 2 * N
        assert [p["outcome"] for p in r2.pairs] == [p["outcome"] for p in r1.pairs]
        pairwise_judge(ITEMS, A, B, endpoint=srv.url, model="scripted", cache=False)
        assert srv.requests == 4 * N                                   # cache=False: memory only, asks again
    from playbook_lib.judge import default_judge_cache
    assert default_judge_cache() == tmp_path/"user-cache"/"judge"/"cache.jsonl"
    text = default_judge_cache().read_text()
    assert len(text.splitlines()) == 2 * N and "sk-secret-456" not in text

def test_the_report_names_the_exact_judge_version_also_from_the_cache(tmp_path):
    "An alias (gpt-4.1) is answered by a dated snapshot: the report records which one judged, and a cached re-run still knows (issue 23, item 16)."
    cache = tmp_path/"c.jsonl"
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle, served_as="scripted-2026-12-01") as srv:
        r1 = judge(srv, cache=cache)
    assert r1.usage.served == {"scripted-2026-12-01": 2 * N} and "实际版本：scripted-2026-12-01" in r1._repr_markdown_()
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv: r2 = judge(srv, cache=cache)
    assert srv.requests == 0 and r2.usage.served == {"scripted-2026-12-01": 2 * N}
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv: r3 = judge(srv)   # name == version: no note
    assert r3.usage.served == {"scripted": 2 * N} and "实际版本" not in r3._repr_markdown_()


def test_all_wins_interval_is_wilson_not_a_point():
    "Issue 28.8: at 20/20 the bootstrap said [100%, 100%]; every pair tied said [50%, 50%]."
    from playbook_lib.judge import summarize_pairs
    r = summarize_pairs([dict(outcome="a")] * 20)
    assert r.win_rate == 1.0 and r.ci == pytest.approx(wilson_ci(20, 20)) and r.ci_method == "wilson" and r.ci[0] < 0.85
    assert "（Wilson）" in r._repr_markdown_() and r.ci[1] == 1.0 and wilson_ci(0, 20)[0] == 0.0   # the point estimate stays inside
    ties = summarize_pairs([dict(outcome="tie")] * 80)
    assert ties.ci[0] < 0.45 < 0.55 < ties.ci[1]
    from playbook_lib.judge import bootstrap_ci
    outs = ["a"] * 50 + ["b"] * 30 + ["tie"] * 20
    mixed, scores = summarize_pairs([dict(outcome=o) for o in outs]), [{"a": 1, "b": 0, "tie": 0.5}[o] for o in outs]
    widths = [hi - lo for lo, hi in (bootstrap_ci(scores), wilson_ci(60, 100))]
    assert mixed.ci[0] < mixed.win_rate == 0.6 < mixed.ci[1] and mixed.ci[1] - mixed.ci[0] == pytest.approx(max(widths))

def test_a_wrong_key_stops_the_run_instead_of_becoming_invalid_verdicts(tmp_path, capsys):
    "Issue 28.8: a 401 used to turn into N 'invalid' pairs and exit 0 from the library."
    from playbook_lib.judge import JudgeEndpointError
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle, api_key="sk-right") as srv:
        with pytest.raises(JudgeEndpointError, match="401") as e: judge(srv, api_key="sk-wrong-789", concurrency=2)
        assert "OPENAI_API_KEY" in e.value.fix and "sk-wrong-789" not in str(e.value)
        assert srv.requests < 2 * N                                    # the queued requests were cancelled
        assert judge(srv, api_key="sk-right").invalid == 0
        pairs = tmp_path/"pairs.jsonl"
        pairs.write_text("\n".join(json.dumps(dict(question=q, a=a, b=b)) for q, a, b in zip(ITEMS, A, B)))
        from playbook_lib.cli import main
        os.environ["OPENAI_API_KEY"] = "sk-wrong-789"
        try: rc = main(["judge", str(pairs), "--base-url", srv.url, "--model", "other"])
        finally: del os.environ["OPENAI_API_KEY"]
    err = capsys.readouterr().err
    assert rc == 2 and "401" in err and "怎么办" in err and "sk-wrong-789" not in err

def test_a_bug_or_disk_error_surfaces_instead_of_invalid_verdicts(tmp_path):
    (tmp_path/"a-file").write_text("not a directory")
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv:
        with pytest.raises(OSError): judge(srv, cache=tmp_path/"a-file"/"cache.jsonl")

def test_api_key_never_in_cache(tmp_path):
    cache = tmp_path / "c.jsonl"
    with ScriptedJudgeServer(verdict="first") as srv: judge(srv, cache=cache, api_key="sk-secret-123")
    assert "sk-secret-123" not in cache.read_text()

CHILD = """
import sys
from playbook_lib.judge import pairwise_judge
N = int(sys.argv[3])
items = [f"q{i}" for i in range(N)]
pairwise_judge(items, [f"a{i}" for i in range(N)], [f"b{i}" for i in range(N)], endpoint=sys.argv[1], model="scripted",
               cache=sys.argv[2], concurrency=2)
"""

def test_killed_run_resumes_from_cache(tmp_path):
    n, cache = 40, tmp_path / "cache.jsonl"
    with ScriptedJudgeServer(verdict="first", delay=0.05) as srv:
        p = subprocess.Popen([sys.executable, "-c", CHILD, srv.url, str(cache), str(n)])
        t0 = time.time()
        while time.time() - t0 < 60 and (not cache.exists() or len(cache.read_text().splitlines()) < 20): time.sleep(0.02)
        p.kill(); p.wait()
        done = len(JudgeCache(cache))
        assert 20 <= done < 2 * n, "the child must be killed midway"
        before = srv.requests
        r = pairwise_judge([f"q{i}" for i in range(n)], [f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)],
                           endpoint=srv.url, model="scripted", cache=cache, concurrency=2)
        assert srv.requests - before == 2 * n - done and r.usage.cache_hits == done
        assert r.ties == n and r.invalid == 0
    keys = [json.loads(l)["key"] for l in cache.read_text().splitlines() if l.strip()]
    assert len(keys) == len(set(keys)) == 2 * n

def test_parse_verdict_is_tolerant_but_never_guesses():
    assert parse_verdict("理由……最终裁决：[[B]]") == "B"
    assert parse_verdict("[[ a ]]") == "A" and parse_verdict("【【C】】") == "C" and parse_verdict("Final verdict: [B]") == "B"
    assert parse_verdict("**Final verdict: A**") == "A"
    assert parse_verdict("[[A]] ... on reflection [[B]]") is None
    assert parse_verdict("Assistant A is better.") is None and parse_verdict("") is None

def test_calibrate_and_stats():
    c = calibrate(["a", "a", "b", "tie", "b", "invalid"], ["a", "b", "b", "tie", "b", "a"])
    assert c.n == 5 and c.agreement == pytest.approx(0.8)
    assert c.kappa == pytest.approx(cohen_kappa(["a", "a", "b", "tie", "b"], ["a", "b", "b", "tie", "b"]))
    assert cohen_kappa(list("aabb"), list("aabb")) == 1.0 and cohen_kappa(list("abab"), list("aabb")) == pytest.approx(0.0)
    lo, hi = wilson_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)

def test_blind_sheet_round_trip(tmp_path):
    csv_path, html_path, key_path = export_blind_test(ITEMS, A, B, tmp_path, names=("base", "specialist"), seed=3)
    text = csv_path.read_text(encoding="utf-8-sig") + html_path.read_text(encoding="utf-8")
    assert "specialist" not in text and "base" not in text  # identities hidden
    key = json.loads(key_path.read_text())
    assert 0 < sum(key["a_on_left"].values()) < N  # sides randomised
    rows = list(csv.DictReader(open(csv_path, encoding="utf-8-sig")))
    for r in rows: r["verdict"] = "left" if r["left"].startswith("good") else "right"  # a rater who sees quality
    rows[0]["verdict"] = ""
    with open(tmp_path / "filled.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, list(rows[0])); w.writeheader(); w.writerows(rows)
    r = import_blind_test(tmp_path / "filled.csv", key_path)
    assert r.invalid == 1 and r.n == N - 1
    assert all(p["outcome"] == ("a" if TRUTH[p["i"]] else "b") for p in r.pairs if p["outcome"] != "invalid")

def test_cli_judge(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(dict(question=q, a=a, b=b)) for q, a, b in zip(ITEMS, A, B)))
    with ScriptedJudgeServer(verdict="oracle", oracle=marker_oracle) as srv:
        rc = cli_judge([str(pairs), "--base-url", srv.url, "--model", "scripted", "--cache", str(tmp_path / "c.jsonl"),
                        "--out", str(tmp_path / "r.json")])
    assert rc == 0 and json.loads((tmp_path / "r.json").read_text())["wins"] == sum(TRUTH)
    assert cli_judge([str(pairs), "--blind-export", str(tmp_path / "sheet")]) == 0
    assert (tmp_path / "sheet" / "sheet.html").exists()
