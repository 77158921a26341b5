"""`playbook decide`: answers files, piped interactive input, bad files -> clear errors and non-zero exit."""
import io, json, subprocess, sys
import pytest
from playbook_lib.decide import cli_decide, QUESTIONS

RUN = "import sys; from playbook_lib.decide import cli_decide; sys.exit(cli_decide(sys.argv[1:]))"
VIA_PLAYBOOK = "import sys; from playbook_lib.cli import main; sys.exit(main(['decide', *sys.argv[1:]]))"
TICKET_JOB = "strict_format: true\nfew_shot_solves_it: false\nlabelled_examples: 1200\nlatency_or_cost_pressure: true\n"


def run(args, stdin="", code=RUN):
    "Run the CLI in a fresh interpreter, as a user would, with `stdin` piped in."
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def job(tmp_path):
    p = tmp_path/"job.yaml"; p.write_text(TICKET_JOB, encoding="utf-8"); return p


def test_answers_file_no_input(job):
    r = run(["--answers", str(job), "--no-input"])
    assert r.returncode == 0, r.stderr
    assert "建议路径：finetune" in r.stdout
    assert "路线：knowledge(否) → behaviour(是) → fewshot(否) → finetune" in r.stdout
    assert "有行为缺口吗？ → 是：strict_format=true" in r.stdout           # the reasons
    assert "need_new_knowledge=false" in r.stdout and "假定的默认值" in r.stdout  # defaults are stated
    assert "03_data.ipynb" in r.stdout                                    # next steps link the chapters


def test_answers_file_then_asks_for_the_rest(job):
    "With a partial file and no --no-input, the missing questions are asked (on stderr), answers read from stdin."
    r = run(["--answers", str(job)], stdin="否\n否\n否\n否\n否\n否\n")
    assert r.returncode == 0, r.stderr
    for qid in ("need_new_knowledge", "new_skill", "persistent_errors"):
        assert QUESTIONS[qid].text in r.stderr
    assert QUESTIONS["strict_format"].text not in r.stderr  # answered in the file: not asked again
    assert "假定的默认值" not in r.stdout and "建议路径：finetune" in r.stdout


def test_piped_interactive_full():
    # order of QUESTIONS: knowledge, changes, citations, few-shot, skill, style, format, errors, examples, pressure
    replies = ["是", "是", "否", "n", "否", "y", "否", "否", "2000", "否"]
    r = run([], stdin="\n".join(replies) + "\n")
    assert r.returncode == 0, r.stderr
    assert "建议路径：rag+finetune" in r.stdout
    assert "路线：knowledge(是) → k_behaviour(是) → k_fewshot(否) → rag_finetune" in r.stdout
    assert "用微调灌事实" in r.stdout and "假定的默认值" not in r.stdout


def test_piped_bad_reply_is_asked_again_and_eof_uses_defaults():
    r = run([], stdin="也许\n否\n")
    assert r.returncode == 0, r.stderr
    assert "请回答 是 或 否" in r.stderr and "输入结束" in r.stderr
    assert "建议路径：prompt" in r.stdout and "few_shot_solves_it=true" in r.stdout  # defaults listed


def test_monkeypatched_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("否\n否\n否\n否\n否\n否\n是\n否\n30\n否\n"))
    assert cli_decide([]) == 0
    out = capsys.readouterr().out
    assert "建议路径：finetune" in out and "数据不够" in out and "至少 50 条" in out


def test_json_and_mermaid(job):
    r = run(["--answers", str(job), "--no-input", "--json"])
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["path"] == "finetune" and d["route"] == ["knowledge", "behaviour", "fewshot", "finetune"]
    assert d["assumed"]["need_new_knowledge"] is False and d["answers"]["labelled_examples"] == 1200
    r = run(["--answers", str(job), "--no-input", "--mermaid"])
    assert "flowchart TD" in r.stdout and "class knowledge,behaviour,fewshot,finetune taken" in r.stdout


def test_through_the_playbook_command(job):
    r = run(["--answers", str(job), "--no-input"], code=VIA_PLAYBOOK)
    assert r.returncode == 0, r.stderr
    assert "建议路径：finetune" in r.stdout


def test_help_is_chinese():
    r = run(["--help"])
    assert r.returncode == 0 and "playbook decide" in r.stdout and "要不要调" in r.stdout and "labelled_examples" in r.stdout


@pytest.mark.parametrize("content,field", [
    ("strict_format: maybe\n", "strict_format"),          # wrong type (str)
    ("labelled_examples: -3\n", "labelled_examples"),     # negative int
    ("labelled_examples: true\n", "labelled_examples"),   # bool is not an int here
    ("strict_fromat: true\n", "strict_fromat"),           # unknown field (typo)
])
def test_bad_field_names_file_and_field(tmp_path, content, field):
    p = tmp_path/"bad_answers.yaml"; p.write_text(content, encoding="utf-8")
    r = run(["--answers", str(p), "--no-input"])
    assert r.returncode != 0
    assert r.stdout == ""
    assert "bad_answers.yaml" in r.stderr and field in r.stderr and "错误" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("content,msg", [
    ("strict_format: [true\n", "不是合法的 YAML"),
    ("- strict_format\n- true\n", "顶层应是"),
])
def test_bad_yaml(tmp_path, content, msg):
    p = tmp_path/"broken.yaml"; p.write_text(content, encoding="utf-8")
    r = run(["--answers", str(p), "--no-input"])
    assert r.returncode != 0 and "broken.yaml" in r.stderr and msg in r.stderr and "Traceback" not in r.stderr


def test_missing_file(tmp_path):
    r = run(["--answers", str(tmp_path/"nope.yaml"), "--no-input"])
    assert r.returncode != 0 and "nope.yaml" in r.stderr and "无法读取" in r.stderr


def test_empty_file_uses_defaults(tmp_path):
    p = tmp_path/"empty.yaml"; p.write_text("", encoding="utf-8")
    r = run(["--answers", str(p), "--no-input"])
    assert r.returncode == 0 and "建议路径：prompt" in r.stdout and "假定的默认值" in r.stdout
