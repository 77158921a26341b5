"The running example's data: committed splits are what the generator makes, and never share a user message."
import json, filecmp
import jsonschema
import pytest
from playbook_lib.tickets import (load_split, write_dataset, ticket_schema, data_dir, read_jsonl, score_tickets,
                                  dump_ticket, parse_ticket)

SPLITS = ["train", "val", "test", "golden"]

def test_no_user_message_in_two_splits():
    users = {k: [r["messages"][1]["content"] for r in load_split(k)] for k in SPLITS}
    for k, v in users.items(): assert len(v) == len(set(v)), f"duplicate user message inside {k}"
    for a in SPLITS:
        for b in SPLITS:
            if a < b: assert not set(users[a]) & set(users[b]), f"{a} and {b} share user messages"

def test_sizes_and_schema():
    sizes = {k: len(load_split(k)) for k in SPLITS}
    assert sizes["train"] >= 1000 and sizes["test"] >= 200 and 50 <= sizes["golden"] <= 100
    v = jsonschema.Draft202012Validator(ticket_schema())
    for k in SPLITS:
        for r in load_split(k):
            assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
            v.validate(json.loads(r["messages"][2]["content"]))

def test_committed_data_is_the_generators_output(tmp_path):
    write_dataset(tmp_path)
    for f in [f"{k}.jsonl" for k in SPLITS] + ["ticket.schema.json"]:
        assert filecmp.cmp(tmp_path/f, data_dir()/f, shallow=False), f"{f} differs from write_dataset(seed=2026)"

def test_bad_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path/"bad.jsonl"; p.write_text('{"a": 1}\n{not json}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"): read_jsonl(p)

def test_score_tickets():
    gold = json.loads(load_split("test", 1)[0]["messages"][2]["content"])
    wrong = dict(gold, priority="low" if gold["priority"] != "low" else "high")
    s = score_tickets([dump_ticket(gold), dump_ticket(wrong), "not json"], [gold]*3)
    assert (s.json_valid, s.exact_match) == (2/3, 1/3)
    assert s.field_acc["priority"] == pytest.approx(1/3)
    assert parse_ticket("```json\n{\"a\":1}\n```") == {"a": 1} and parse_ticket("[1]") is None
