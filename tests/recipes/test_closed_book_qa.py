"""The closed-book QA recipe: scoring, config checks, memorisation, two processes, the saved folder."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, pipeline

from data import files
from data.errors import DataError
from data.qa_features import TemplatePrompts
from data.tokenizers import train_tokenizer
from recipes.closed_book_qa.generation_eval import generate_answers, prompt_length_that_fits, score_predictions
from recipes.closed_book_qa.train import CONFIG_CLASSES, main
from recipes.kit.command_line import parse_config
from tests.conftest import tiny_overrides
from tests.tiny_models import gpt2_config

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "closed_book_qa"
TINY = str(RECIPE / "configs" / "tiny.yaml")
SAMPLES = REPO / "data" / "samples" / "closed_book_qa"
TEMPLATE = "question: {question}\nanswer:"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """`data.files.write_jsonl`, returning the path as the recipe's flags take it."""
    files.write_jsonl(path, rows)
    return str(path)


def sample_rows(split: str, n: int) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]]


def test_scores_match_hand_computed_squad_em_and_f1():
    predictions = ["The Eiffel Tower!", "paris france", "Shakespeare", "an apple", "blue"]
    golds = [["eiffel tower"], ["Paris"], ["William Shakespeare", "shakespeare"], ["Apple."], ["red", "green"]]
    scores, means = score_predictions(predictions, golds)
    # "paris france" vs "paris": precision 1/2, recall 1 -> F1 2/3; articles and punctuation are ignored.
    assert [s["em"] for s in scores] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert [s["f1"] for s in scores] == pytest.approx([1.0, 2 / 3, 1.0, 1.0, 0.0])
    assert means == pytest.approx({"exact_match": 3 / 5, "f1": (3 + 2 / 3) / 5})


def test_prompt_template_without_question_fails_at_config_time(tmp_path):
    with pytest.raises(ValueError, match="prompt_template"):
        parse_config(*CONFIG_CLASSES, argv=[TINY, "--output_dir", str(tmp_path), "--prompt_template", "Q: {q}"])


def test_missing_column_fails_naming_file_and_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q1", "answer": ["a"]}, {"question": "q2"}])
    argv = [TINY, "--output_dir", str(tmp_path / "out"), "--train_file", bad, "--validation_file", bad]
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: missing column 'answer'"):
        main(*parse_config(*CONFIG_CLASSES, argv=argv))


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """64 sample pairs, trained and evaluated on themselves with a tiny GPT-2 built from a config.

    No dropout and full-ish batches: 200 steps reach exact match 1.0 (0.72 with 160 steps of a 64-wide model).
    """
    tmp = tmp_path_factory.mktemp("memorised")
    pairs = write_jsonl(tmp / "pairs.jsonl", sample_rows("train", 64))
    output_dir = tmp / "out"
    argv = [
        TINY,
        "--output_dir",
        str(output_dir),
        "--train_file",
        pairs,
        "--validation_file",
        pairs,
        "--config_overrides",
        "n_embd=128,n_layer=2,n_head=4,n_positions=64,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0",
        "--tokenizer_vocab_size",
        "400",
        "--num_train_epochs",
        "100",
        "--per_device_train_batch_size",
        "32",
        "--learning_rate",
        "3e-3",
        "--warmup_steps",
        "0.05",
        "--logging_steps",
        "1000",
        "--disable_tqdm",
        "true",
    ]
    metrics = main(*parse_config(*CONFIG_CLASSES, argv=argv))
    return output_dir, metrics


@pytest.mark.slow
def test_tiny_gpt2_memorises_64_pairs(memorised):
    output_dir, metrics = memorised
    assert metrics["eval_exact_match"] >= 0.95, metrics
    saved = json.loads((output_dir / "eval_results.json").read_text())
    assert saved["eval_exact_match"] == metrics["eval_exact_match"] and saved["eval_samples"] == 64
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == [r["question"] for r in sample_rows("train", 64)]
    assert sum(r["em"] for r in rows) / len(rows) == metrics["eval_exact_match"]


@pytest.mark.slow
def test_saved_folder_answers_through_the_text_generation_pipeline(memorised):
    output_dir, _ = memorised
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()][:8]
    qa = pipeline("text-generation", model=str(output_dir))
    for row in rows:
        out = qa(TEMPLATE.format(question=row["question"]), return_full_text=False)
        assert out[0]["generated_text"].split("\n")[0].strip() == row["prediction"]


@pytest.mark.slow
def test_batched_generation_equals_one_question_at_a_time(memorised):
    output_dir, _ = memorised
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    questions = [r["question"] for r in sample_rows("validation", 12)]  # unseen: less peaked, varied lengths
    prompts = TemplatePrompts(tokenizer, TEMPLATE)
    texts = prompts.prompt_texts(questions)
    kwargs = {"max_prompt_length": 64, "generation_config": model.generation_config}
    batched = generate_answers(model, prompts, texts, **kwargs)
    single = [generate_answers(model, prompts, [text], **kwargs)[0] for text in texts]
    assert batched == single


def test_long_prompts_are_cut_so_that_the_answer_fits_in_the_positions(caplog):
    questions = [r["question"] for r in sample_rows("train", 64)]
    tokenizer = train_tokenizer(questions, kind="bpe", vocab_size=300)
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(vocab_size=len(tokenizer), n_positions=32)).eval()
    # 8 new tokens whatever the model says: with the whole 32-token prompt, positions 32..39 do not exist
    generation = model.generation_config
    generation.update(max_new_tokens=8, min_new_tokens=8, pad_token_id=tokenizer.eos_token_id)
    long_question = " ".join(questions[:8])  # well over 32 tokens
    max_prompt_length = prompt_length_that_fits(model.config, max_seq_length=32, max_new_tokens=8)
    assert max_prompt_length == 24
    assert "cut to their last 24 tokens for generation: max_seq_length 32 + max_new_tokens 8 > 32" in caplog.text
    prompts = TemplatePrompts(tokenizer, TEMPLATE)
    texts = prompts.prompt_texts([long_question])
    generate_answers(model, prompts, texts, max_prompt_length=max_prompt_length, generation_config=generation)
    with pytest.raises(IndexError):  # what evaluation met before: the prompt cut to max_seq_length alone
        generate_answers(model, prompts, texts, max_prompt_length=32, generation_config=generation)


@pytest.mark.slow
def test_two_processes_score_each_question_exactly_once(tmp_path, launch):
    questions = write_jsonl(tmp_path / "eval.jsonl", sample_rows("validation", 7))  # odd: 7 = 2 x 2 + 2 x 2 - 1
    output_dir = tmp_path / "out"
    log = launch(
        RECIPE / "train.py",
        TINY,
        "--output_dir",
        str(output_dir),
        "--train_file",
        str(SAMPLES / "train.jsonl"),
        "--validation_file",
        questions,
        *tiny_overrides("closed_book_qa"),
        "--max_train_samples",
        "16",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "2",
        "--max_new_tokens",
        "3",
        cwd=tmp_path,
    )
    assert re.search(r"process 0 of 2\b", log)  # really two processes
    rows = [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert sorted(r["question"] for r in rows) == sorted(r["question"] for r in sample_rows("validation", 7))
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    assert metrics["eval_samples"] == 7
    assert metrics["eval_exact_match"] == pytest.approx(sum(r["em"] for r in rows) / 7)


@pytest.mark.slow
def test_lora_changes_only_the_adapted_projections_of_a_checkpoint(tmp_path):
    """From a local GPT-2 checkpoint: after LoRA training and merging, every tensor but the adapted `c_attn`
    weights is bit-identical to the checkpoint, and those changed (the adapters learnt something)."""
    checkpoint = tmp_path / "gpt2"
    texts = (REPO / "data/samples/lm/train.txt").read_text().splitlines()
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=400)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    gpt2 = GPT2LMHeadModel(gpt2_config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos))
    gpt2.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    output_dir = tmp_path / "out"
    argv = [
        TINY,
        "--output_dir",
        str(output_dir),
        "--model_name_or_path",
        str(checkpoint),
        "--config_overrides",
        "",
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "3",
        "--max_steps",
        "4",
        "--learning_rate",
        "1e-2",
        "--use_lora",
        "true",
        "--lora_r",
        "4",
        "--max_new_tokens",
        "2",
    ]
    main(*parse_config(*CONFIG_CLASSES, argv=argv))
    before, after = (load_file(folder / "model.safetensors") for folder in (checkpoint, output_dir))
    assert not any("lora" in key for key in after)  # merged: a plain model
    changed = {key for key, value in after.items() if not torch.equal(value, before[key])}
    assert changed == {f"transformer.h.{i}.attn.c_attn.weight" for i in range(2)}
