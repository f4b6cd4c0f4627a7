"""Each model folder's `auto_map` holds exactly the Auto classes the README advertises for it (its table of
models), and every one of them loads the folder in a process that cannot import this repository."""

import json

import pytest

from tests.custom_models import test_bert_mlp, test_nce_lm, test_transfo_xl

# The README's table of models: package -> the Auto classes it lists, and the class each must build.
ADVERTISED = {
    "bert_mlp": (test_bert_mlp.tiny_model, {"AutoModelForSequenceClassification": "BertMLPForSequenceClassification"}),
    "nce_lm": (test_nce_lm.tiny_model, {"AutoModel": "NCELMModel", "AutoModelForCausalLM": "NCELMForCausalLM"}),
    "transfo_xl": (
        test_transfo_xl.tiny_model,
        {"AutoModel": "TransformerXLModel", "AutoModelForCausalLM": "TransformerXLForCausalLM"},
    ),
}

_LOAD_EACH = """
import json, sys, transformers
folder, names = sys.argv[1], json.loads(sys.argv[2])
built = {}
for name in names:
    model = getattr(transformers, name).from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    built[name] = type(model).__name__
print(json.dumps(built))
"""


@pytest.mark.slow
@pytest.mark.parametrize("package", sorted(ADVERTISED))
def test_auto_map_holds_the_advertised_classes_and_each_loads_in_a_clean_process(package, tmp_path, clean_process):
    build, advertised = ADVERTISED[package]
    build().save_pretrained(tmp_path / "model")
    auto_map = json.loads((tmp_path / "model" / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", *advertised}, auto_map
    result = clean_process(_LOAD_EACH, str(tmp_path / "model"), json.dumps(sorted(advertised)), cwd=tmp_path)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == advertised
