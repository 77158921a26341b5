"Appendix G (issue 29): one dated facts table; a new tier is one row; the facts layer imports nothing."
import ast
from pathlib import Path
import playbook_lib.facts as F


def test_a_new_tier_is_one_row(monkeypatch):
    "Adding a tier touched 6 modules in 8 places; now a row in facts.TIERS is picked by detection, resolution, the offline estimator and data's template check."
    import playbook_lib.data as D
    from playbook_lib.models import load_tokenizer
    from playbook_lib.models import detect_tier, resolve_tier
    from playbook_lib.plan import estimate, model_config
    shape = dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
    l4 = F.Tier("l4", "Qwen/Qwen2.5-3B-Instruct", "L4", True, "bfloat16", "other", 22., (8, 9), "qwen2.5", shape)
    monkeypatch.setitem(F.TIERS, "l4", l4)
    assert detect_tier(dict(name="NVIDIA L4", memory_gb=22.0, capability=(8, 9))) == "l4"
    assert detect_tier(dict(name="NVIDIA A100", memory_gb=39.4, capability=(8, 0))) == "a100"
    assert detect_tier(dict(name="RTX 3060", memory_gb=12.0, capability=(8, 6))) == "t4"   # below every tier: the smallest
    assert resolve_tier("L4") is l4 and model_config("l4").num_hidden_layers == 36
    assert estimate("l4", "qlora", gpu="L4", seq_len=512, batch=2).fits
    monkeypatch.setattr(D, "load_tokenizer", lambda m: load_tokenizer("cpu"))   # the 3B tokenizer is not on this machine: a real stand-in
    assert D.resolve_tokenizer("l4")[1] == "qwen2.5" and D.resolve_tokenizer("cpu")[1] == "smollm2"   # the family data checks against


def test_tier_rows_are_consistent_and_the_cpu_shape_is_the_real_checkpoint():
    "Every tier names a registered template family and a full shape; the cpu tier's shape gives the parameter count of the cached checkpoint."
    from playbook_lib.models import ensure_cpu_checkpoint
    from playbook_lib.plan import trainable_params
    for t in F.TIERS.values():
        assert t.family in F.TEMPLATE_FACTS and t.shape.get("model_type"), t.name
        assert t.dtype != "bfloat16" or t.min_capability >= (8, 0), t.name
    assert F.MODEL_SHAPES[F.TIERS["t4"].model_id] is F.TIERS["t4"].shape
    assert trainable_params("cpu", "full") == trainable_params(str(ensure_cpu_checkpoint()), "full")


def test_the_facts_layer_imports_nothing_but_the_standard_library():
    tree = ast.parse(Path(F.__file__).read_text(encoding="utf-8"))
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert mods <= {"__future__", "dataclasses"}, mods


def test_facts_dates_lists_every_table_oldest_first():
    rows = F.facts_dates().splitlines()[2:]
    assert len(rows) == len(F.FACTS) and [r.split("|")[2].strip() for r in rows] == sorted(d for d, _, _ in F.FACTS.values())
