"The memory estimator on inputs a user brings: an unsupported method or an unlisted GPU is named, never silently mis-estimated."
import pytest
from playbook_lib.plan import estimate, GPU_SPECS, gpu_spec

SHAPE = "Qwen/Qwen2.5-1.5B-Instruct"   # a known shape: no network

def test_an_unsupported_method_is_refused_not_estimated_as_full():
    "Before: estimate(..., 'dora') returned the full fine-tuning figure (issue 28.9)."
    with pytest.raises(ValueError, match="dora.*full, lora, qlora"): estimate(SHAPE, "dora")
    assert estimate(SHAPE, "lora").total_gb < estimate(SHAPE, "full").total_gb

def test_an_unlisted_gpu_is_named_with_the_known_ones():
    "Before: a bare KeyError for RTX3090 / H200 (issue 28.9)."
    for g in ("H200", "RTX3090"): assert estimate(SHAPE, "qlora", gpu=g).gpu_gb == GPU_SPECS[g]["memory_gb"]
    with pytest.raises(ValueError, match="MI300X.*T4"): estimate(SHAPE, "qlora", gpu="MI300X")
    with pytest.raises(ValueError, match="GPU_SPECS"): gpu_spec("V100")
