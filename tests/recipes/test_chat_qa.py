"""Closed-book QA with chat-tuned decoders (`prompt_format chat`, data/chat_prompts.py): per family (Llama, Qwen2,
Phi-3, Gemma 2, GPT-2), a tiny model built from its config and a BPE tokenizer with the family's special tokens and
a chat template shaped like the family's (written here, short); the labels are exactly the answer and the
end-of-turn token; the recipe trains, saves, and its folder answers through `pipeline("text-generation")` in a
clean process as the recipe's own predictions say."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from data.chat_prompts import ChatPrompts
from data.errors import DataError
from data.labels import IGNORE_INDEX
from data.qa_features import TemplatePrompts, qa_training_examples
from recipes.closed_book_qa.train import CONFIG_CLASSES, QADataArguments, main, prepare_for_generation, qa_prompts
from recipes.kit.command_line import parse_config
from recipes.kit.errors import ConfigError
from tests.chat_families import FAMILIES, GEMMA2_TEMPLATE, GPT2_TEMPLATE, QWEN2_TEMPLATE, family_tokenizer, sample_rows

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def end_of_turn(name: str) -> str:
    return FAMILIES[name].end_of_turn or FAMILIES[name].eos


REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "recipes" / "closed_book_qa" / "configs" / "tiny.yaml")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_labels_are_exactly_the_answer_and_the_end_of_turn(name):
    tokenizer = family_tokenizer(FAMILIES[name])
    prompts = ChatPrompts(tokenizer, system_prompt="answer briefly")
    example = {
        k: rows[0]
        for k, rows in qa_training_examples(
            ["who wrote hamlet"], ["william shakespeare"], prompts, max_seq_length=128
        ).items()
    }
    labelled = [token for token in example["labels"] if token != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "william shakespeare" + end_of_turn(name)
    prompt = example["input_ids"][: len(example["input_ids"]) - len(labelled)]
    assert example["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    conversation = [{"role": "system", "content": "answer briefly"}, {"role": "user", "content": "who wrote hamlet"}]
    expected = tokenizer.apply_chat_template(conversation, add_generation_prompt=True)["input_ids"]
    assert prompt == expected  # the prompt the pipeline builds from the same messages
    assert prompts.stop_ids()[0] == tokenizer.convert_tokens_to_ids(end_of_turn(name))


def test_a_template_that_rewrites_earlier_turns_is_refused_naming_it():
    # The user's turn is written in capitals once the conversation is complete.
    rewriting = QWEN2_TEMPLATE.replace(
        "{{ m['content'] }}", "{{ m['content'] if add_generation_prompt else m['content'] | upper }}"
    )
    tokenizer = family_tokenizer(FAMILIES["qwen2"])
    ChatPrompts(tokenizer)  # the family's own template is accepted
    tokenizer.chat_template = rewriting
    with pytest.raises(
        ValueError, match="^my template: the conversation with an answer does not start with the prompt"
    ):
        ChatPrompts(tokenizer, template_name="my template")


def test_an_assistant_turn_without_a_special_end_token_is_refused():
    tokenizer = family_tokenizer(FAMILIES["gpt2"])
    tokenizer.chat_template = GPT2_TEMPLATE.replace("{{ eos_token }}", "")
    with pytest.raises(ValueError, match="no special token ends the assistant's turn"):
        ChatPrompts(tokenizer)


def test_a_prompt_that_is_not_a_token_prefix_is_refused_naming_the_question():
    # "assistant: " ends with a space that byte-level BPE joins to the answer's first word (" three", one token).
    tokenizer = family_tokenizer(FAMILIES["gpt2"])
    tokenizer.chat_template = GPT2_TEMPLATE.replace(":\n'", ": '")
    prompts = ChatPrompts(tokenizer, template_name="spaced")
    assert tokenizer.tokenize(" three") == ["Ġthree"]
    with pytest.raises(DataError, match="^spaced: the prompt of 'what is 2 plus 1' is not a token prefix"):
        qa_training_examples(["what is 2 plus 1"], ["three"], prompts, max_seq_length=128)


def family_checkpoint(name: str, folder: Path) -> Path:
    """A tiny model of the family `name` built from its config (seed 0), saved with `family_tokenizer`."""
    tokenizer = family_tokenizer(FAMILIES[name])
    special = {f"{kind}_token_id": getattr(tokenizer, f"{kind}_token_id") for kind in ("bos", "eos", "pad")}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(FAMILIES[name].config(vocab_size=len(tokenizer), **special))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_chat_recipe(tmp_path: Path, checkpoint: Path, *flags: str) -> Path:
    """The recipe on `checkpoint`: 16 sample pairs as conversations (`messages`), 4 validation questions to answer
    (`do_predict`, one at a time); returns `output_dir`."""
    train = tmp_path / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"][0]}]}
        for r in sample_rows("train")[:16]
    ]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in sample_rows("validation")[:4]))
    output_dir = tmp_path / "out"
    argv = [
        *[TINY, "--output_dir", str(output_dir), "--model_name_or_path", str(checkpoint), "--config_overrides", ""],
        *["--train_file", str(train), "--do_eval", "false", "--do_predict", "true", "--test_file", str(test)],
        *["--max_steps", "3", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "1"],
        *["--learning_rate", "1e-3", "--max_new_tokens", "6", "--disable_tqdm", "true", *flags],
    ]
    main(*parse_config(*CONFIG_CLASSES, argv=argv))
    return output_dir


PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
folder, questions, system = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
qa = pipeline("text-generation", model=folder)
answers = [
    qa([{"role": "system", "content": system}, {"role": "user", "content": q}])[0]["generated_text"][-1]["content"]
    for q in questions
]
print(json.dumps([answer.strip() for answer in answers]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_the_saved_folder_answers_through_the_chat_pipeline_as_the_recipe_predicted(name, tmp_path, clean_process):
    checkpoint = family_checkpoint(name, tmp_path / "checkpoint")
    output_dir = run_chat_recipe(tmp_path, checkpoint, "--system_prompt", "answer briefly")
    trained = load_file(output_dir / "model.safetensors")
    assert any(not torch.equal(w, trained[k]) for k, w in load_file(checkpoint / "model.safetensors").items())
    card = (output_dir / "README.md").read_text(encoding="utf-8")
    assert "prompt_format: chat" in card  # `auto`, resolved and recorded
    rows = [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
    predictions = [row["prediction"] for row in rows]
    assert any(predictions)  # something to compare: not every answer ended at once
    assert not any(end_of_turn(name) in p for p in predictions)
    stops = json.loads((output_dir / "generation_config.json").read_text())["eos_token_id"]
    assert AutoTokenizer.from_pretrained(output_dir).convert_tokens_to_ids(end_of_turn(name)) in stops
    questions = json.dumps([row["question"] for row in rows])
    result = clean_process(PIPELINE_SCRIPT, str(output_dir), questions, "answer briefly", cwd=tmp_path)
    assert json.loads(result.stdout.splitlines()[-1]) == predictions
    # The folder predicts alone as it did in training: its own tokenizer's chat template, resolved again (`auto`).
    again = tmp_path / "again"
    argv = [TINY, "--output_dir", str(again), "--model_name_or_path", str(output_dir), "--config_overrides", ""]
    argv += ["--do_train", "false", "--do_eval", "false", "--do_predict", "true"]
    argv += ["--test_file", str(tmp_path / "test.jsonl"), "--per_device_eval_batch_size", "1", "--max_new_tokens", "6"]
    main(*parse_config(*CONFIG_CLASSES, argv=[*argv, "--system_prompt", "answer briefly"]))
    predicted_again = [
        json.loads(line)["prediction"] for line in (again / "predictions.jsonl").read_text().splitlines()
    ]
    assert predicted_again == predictions


@pytest.mark.slow
def test_dora_with_rslora_trains_all_linear_layers_and_merges(tmp_path):
    checkpoint = family_checkpoint("llama", tmp_path / "checkpoint")
    flags = [
        "--use_lora",
        "true",
        "--use_dora",
        "true",
        "--use_rslora",
        "true",
        "--max_steps",
        "1",
        "--warmup_steps",
        "0",
    ]
    output_dir = run_chat_recipe(tmp_path, checkpoint, *flags)
    before, after = (load_file(folder / "model.safetensors") for folder in (checkpoint, output_dir))
    assert not any("lora" in key for key in after)  # merged: a plain model
    changed = {key for key, value in after.items() if not torch.equal(value, before[key])}
    linear = [f"self_attn.{p}_proj" for p in "qkvo"] + [f"mlp.{p}_proj" for p in ("gate", "up", "down")]
    assert changed == {f"model.layers.0.{module}.weight" for module in linear}  # all-linear: not the head


def test_prompt_format_chat_without_a_chat_template_is_refused(tmp_path):
    argv = [TINY, "--output_dir", str(tmp_path / "out"), "--prompt_format", "chat", "--max_steps", "1"]
    with pytest.raises(ConfigError, match="^prompt_format chat: the tokenizer has no chat template"):
        main(*parse_config(*CONFIG_CLASSES, argv=argv))


@pytest.mark.parametrize("flag", ["--chat_template", "--system_prompt"])
def test_chat_fields_with_prompt_format_template_fail_at_parse_time(tmp_path, flag):
    argv = [TINY, "--output_dir", str(tmp_path), "--prompt_format", "template", flag, "x"]
    with pytest.raises(ConfigError, match=f"^{flag[2:]} is for chat prompts"):
        parse_config(*CONFIG_CLASSES, argv=argv)


def test_a_chat_template_file_turns_auto_into_chat_and_is_saved_with_the_tokenizer(tmp_path):
    tokenizer = family_tokenizer(FAMILIES["gpt2"])
    tokenizer.chat_template = None
    plain = QADataArguments(train_file="train.jsonl")
    assert isinstance(qa_prompts(prepare_for_generation(tokenizer, plain), plain), TemplatePrompts)
    assert plain.prompt_format == "template"  # `auto`, resolved
    (tmp_path / "chat.jinja").write_text(GPT2_TEMPLATE, encoding="utf-8")
    data_args = QADataArguments(train_file="train.jsonl", chat_template=str(tmp_path / "chat.jinja"))
    prompts = qa_prompts(prepare_for_generation(tokenizer, data_args), data_args)
    assert isinstance(prompts, ChatPrompts) and data_args.prompt_format == "chat"
    tokenizer.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").chat_template == GPT2_TEMPLATE


def test_a_template_that_refuses_the_system_prompt_is_refused_in_one_line(tmp_path):
    tokenizer = family_tokenizer(FAMILIES["gemma2"])  # as Gemma's own template refuses a system turn
    tokenizer.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    )
    tokenizer.chat_template += GEMMA2_TEMPLATE
    data_args = QADataArguments(train_file="train.jsonl", system_prompt="answer briefly")
    with pytest.raises(ConfigError, match="^prompt_format chat: the chat template of .*: no system role$"):
        qa_prompts(tokenizer, data_args)
    assert isinstance(qa_prompts(tokenizer, QADataArguments(train_file="train.jsonl")), ChatPrompts)
