"""Converts a transformers 4.x Transformer-XL folder (e.g. `transfo-xl/transfo-xl-wt103`) to a 5.x model folder.

    python -m custom_models.transfo_xl.convert_legacy transfo-xl/transfo-xl-wt103 ./transfo-xl-wt103
    python -m custom_models.transfo_xl.convert_legacy SRC DST [--revision R] [--push_to_hub you/name]

SRC is a local folder or a Hub repository id holding the 4.x layout: `config.json` (`model_type:
"transfo-xl"`), `pytorch_model.bin` and the word vocabulary `vocab.pkl`. DST receives what loads with
`AutoTokenizer.from_pretrained(DST)` and `AutoModelForCausalLM.from_pretrained(DST, trust_remote_code=True)`
in any transformers 5.x process: `model.safetensors`, our `config.json` (with `auto_map`), the model's
code, `generation_config.json`, a `tokenizer.json` with exactly the legacy ids, and a model card. No pickle
file is written.

Why a converter: `vocab.pkl` is a pickle, and unpickling runs whatever code the file names (the reason
transformers deprecated, then removed, Transformer-XL). Here it is read by an unpickler that accepts only
the two classes a Transformer-XL vocabulary is made of, `collections.Counter` and `collections.OrderedDict`,
and refuses any other global by name before anything is called; the weights are read with
`torch.load(weights_only=True)` by `from_pretrained`. After conversion nobody needs to unpickle anything.

Not shipped with the model: `save_pretrained` copies only the files the model and config files import.
"""

import argparse
import collections
import io
import logging
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from transformers import PreTrainedTokenizerFast

import custom_models  # noqa: F401  (registers the Auto classes, so save_pretrained writes auto_map and the code)
from data.tokenizers import word_level_tokenizer

from .modeling_transfo_xl import TransformerXLForCausalLM

logger = logging.getLogger(__name__)

#: What `snapshot_download` fetches from a Hub repository of the 4.x layout (tf_model.h5 and the rest are skipped).
LEGACY_FILES = ["config.json", "pytorch_model.bin", "model.safetensors", "vocab.pkl"]
#: The only globals a Transformer-XL `Vocab.__dict__` pickle refers to (checked on wt103's layout); the
#: pickle protocol itself needs no builtins for it.
_ALLOWED_GLOBALS = {
    ("collections", "Counter"): collections.Counter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
# torch's legacy (pre-zip) `torch.save` format: five pickles in a row, the magic number, the format version,
# a dict of sys info, the object, then the list of storage keys (tensor data would follow; a vocabulary has none).
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_VERSION = 1001


class ConversionError(ValueError):
    """A source that cannot be converted as given; the message names it and says what to do."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (or holds tensor storages); nothing in it was run."""


class _VocabUnpickler(pickle.Unpickler):
    """Unpickles `Vocab.__dict__`-like data; `find_class` is the only way a pickle reaches code, so refusing
    there refuses before any forbidden callable exists."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.path}: refusing the global {module}.{name}; a Transformer-XL vocabulary needs only {allowed} "
                "(nothing in the file was executed)"
            )
        return _ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.path}: holds tensor storage {pid!r}; a vocabulary holds none")


def _load_vocab_object(path: Path) -> Any:
    """The object in `path`: a torch.save zip archive (`*/data.pkl`), a legacy torch.save, or a plain pickle."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError(f"{path}: a torch.save archive holds one */data.pkl, found {pickles}")
            return _VocabUnpickler(io.BytesIO(archive.read(pickles[0])), path).load()
    with open(path, "rb") as file:
        first = _VocabUnpickler(file, path).load()
        if not (isinstance(first, int) and first == _TORCH_LEGACY_MAGIC):
            return first  # a plain pickle of the object itself
        version = _VocabUnpickler(file, path).load()
        if version != _TORCH_LEGACY_VERSION:
            raise ValueError(f"{path}: legacy torch.save format version {version!r}, expected {_TORCH_LEGACY_VERSION}")
        _VocabUnpickler(file, path).load()  # sys info: endianness and type sizes, unused without tensors
        return _VocabUnpickler(file, path).load()


def read_legacy_vocab(path: str | Path) -> dict[str, Any]:
    """Reads a Transformer-XL `vocab.pkl` (the original `Vocab.__dict__`) without running code from it.

    Why not `torch.load` / `pickle.load`: a pickle can call any function while loading. This accepts only
    `collections.Counter` and `collections.OrderedDict` and raises `UnsafePickleError` naming any other
    global (module.name) and the file before it is called. Reads the legacy and zip `torch.save` formats
    and plain pickles.

    Returns the dict as saved, checked: `idx2sym` (list of words, index = id), `sym2idx` (word -> id, the
    inverse of `idx2sym`), `lower_case` (bool); `eos_idx`, `counter`, `special`... as the file has them.
    """
    path = Path(path)
    try:
        vocab = _load_vocab_object(path)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a readable Transformer-XL vocabulary ({error})") from error
    if not isinstance(vocab, dict) or not {"idx2sym", "sym2idx", "lower_case"} <= vocab.keys():
        found = sorted(vocab) if isinstance(vocab, dict) else type(vocab).__name__
        raise ValueError(f"{path}: expected a Vocab.__dict__ with idx2sym, sym2idx and lower_case, found {found}")
    idx2sym, sym2idx = vocab["idx2sym"], vocab["sym2idx"]
    if not isinstance(idx2sym, list) or not all(isinstance(word, str) for word in idx2sym):
        raise ValueError(f"{path}: idx2sym must be a list of strings")
    if (
        not isinstance(sym2idx, dict)
        or len(sym2idx) != len(idx2sym)
        or any(sym2idx.get(word) != i for i, word in enumerate(idx2sym))
    ):
        raise ValueError(f"{path}: sym2idx is not the inverse of idx2sym, so word ids are ambiguous")
    if not isinstance(vocab["lower_case"], bool):
        raise ValueError(f"{path}: lower_case must be a bool, got {vocab['lower_case']!r}")
    return vocab


def legacy_tokenizer(vocab: dict[str, Any]) -> PreTrainedTokenizerFast:
    """The vocabulary of `read_legacy_vocab` as a fast tokenizer with the same ids (whitespace words,
    `<unk>` for unknown words, `lower_case` honoured, no `<eos>` added)."""
    return word_level_tokenizer(vocab["idx2sym"], lower_case=vocab["lower_case"])


def _download(source: str, revision: str | None) -> tuple[Path, str]:
    """The folder holding `source` and a provenance line: a local folder as is, else a Hub snapshot."""
    if Path(source).is_dir():
        if revision is not None:
            raise ValueError(f"--revision applies to Hub repositories; {source} is a local folder")
        return Path(source), f"the local folder `{Path(source).resolve()}`"
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id=source, revision=revision, allow_patterns=LEGACY_FILES))
    except HFValidationError:
        raise ConversionError(f"{source}: no such folder (nor a valid Hub repository id)") from None
    except LocalEntryNotFoundError:
        remedy = "unset HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else "check the network"
        raise ConversionError(
            f"{source}: not a local folder and not in the Hub cache; give a local folder, or {remedy} to download it"
        ) from None
    except HfHubHTTPError as error:  # no such repository or revision, gated, server error
        raise ConversionError(f"{source}: cannot download from the Hub ({str(error).splitlines()[0]})") from None
    asked = f", revision `{revision}`" if revision else ""
    return folder, f"the Hub repository [`{source}`](https://huggingface.co/{source}){asked}, commit `{folder.name}`"


def _model_card(
    model: TransformerXLForCausalLM, vocab: dict[str, Any], *, model_id: str, provenance: str, command: str
) -> str:
    """README.md of the converted folder: what the model is, where it came from and how, how to use it."""
    config = model.config
    adaptive = (
        f"adaptive input and adaptive softmax (clusters at {config.cutoffs}, div_val {config.div_val}); its "
        "`logits` are log-probabilities"
        if config.adaptive
        else "one tied softmax layer; its `logits` are raw scores"
    )
    case = "lower-cased (the tokenizer lowercases input)" if vocab["lower_case"] else "case-sensitive"
    return f"""---
library_name: transformers
tags:
- transformer-xl
- finetune-recipes
---

# Transformer-XL, converted from the transformers 4.x layout

A word-level Transformer-XL language model (Dai et al. 2019, arXiv 1901.02860): {config.n_layer} layers,
d_model {config.d_model}, {config.n_head} heads, {model.num_parameters():,} parameters;
{adaptive}.
Vocabulary: {len(vocab["idx2sym"]):,} words, {case}; text is split on whitespace (WikiText is already
tokenised), unknown words become `<unk>`, and `<eos>` ends a line but is not added by the tokenizer.
Memory settings: `mem_len` {config.mem_len}, `clamp_len` {config.clamp_len}, `same_length` {config.same_length}.

## Provenance

Converted from {provenance}
by `custom_models/transfo_xl/convert_legacy.py` of finetune-recipes: the weights unchanged
(`pytorch_model.bin` read with `torch.load(weights_only=True)`, written as `model.safetensors`), the config
rewritten from `model_type: "transfo-xl"` to this repository's `transformer-xl`, and `vocab.pkl` (read by
an unpickler that allows only `collections.Counter` and `collections.OrderedDict`) rebuilt as
`tokenizer.json` with the same word ids. This folder holds no pickle file.

```bash
{command}
```

## Use

The model code ships in this folder, hence `trust_remote_code=True` (it imports only `torch` and
`transformers`). `mems` carries each layer's memory from one segment to the next (batch-first).

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# AutoTokenizer reads config.json too, whose class is shipped code: without the flag transformers asks first.
tokenizer = AutoTokenizer.from_pretrained("{model_id}", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("{model_id}", trust_remote_code=True).eval()

# Generation: after the prompt, each step feeds one token and the memory.
prompt = tokenizer("the history of the city", return_tensors="pt")
print(tokenizer.decode(model.generate(**prompt, max_new_tokens=30, do_sample=True, top_k=40)[0]))

# Evaluation as in the paper: one token stream (`<eos>` per line), segments in order, memory carried;
# every token after the first is scored once. log_softmax leaves log-probabilities unchanged.
lines = ["= Valkyria Chronicles III =", "Senjō no Valkyria 3 is a tactical role @-@ playing game ."]
ids = torch.tensor([[i for line in lines for i in tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]]])
nll, count, mems = 0.0, 0, None
with torch.no_grad():
    for start in range(0, ids.shape[1] - 1, 128):
        segment, targets = ids[:, start : start + 128], ids[:, start + 1 : start + 129]
        out = model(segment, mems=mems)
        log_probs = torch.log_softmax(out.logits[:, : targets.shape[1]], dim=-1)
        nll -= log_probs.gather(-1, targets[..., None]).sum().item()
        count, mems = count + targets.numel(), out.mems
print("perplexity", torch.tensor(nll / count).exp().item())
```

The finetune-recipes repository evaluates this folder by the paper's WikiText-103 protocol (test stream in
16 streams, segments of 128, memory 1600, clamp_len 1000, same_length):
`accelerate launch recipes/transformer_xl/train.py recipes/transformer_xl/configs/wt103_eval.yaml
--model_name_or_path {model_id}`.
"""


def convert(
    source: str | Path, destination: str | Path, *, revision: str | None = None, push_to_hub: str | None = None
) -> Path:
    """Converts the 4.x Transformer-XL `source` (local folder or Hub id) into the 5.x folder `destination`.

    The vocabulary is read first, so an unsafe `vocab.pkl` fails (`UnsafePickleError`) before anything else
    is loaded. `destination` must be empty or absent. With `push_to_hub`, the folder is then uploaded to
    that repository (created if needed; the token comes from the environment / `hf auth login`).
    Returns `destination`.
    """
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} is not empty; convert into a new folder")
    folder, provenance = _download(str(source), revision)
    vocab = read_legacy_vocab(folder / "vocab.pkl")
    tokenizer = legacy_tokenizer(vocab)
    model = TransformerXLForCausalLM.from_pretrained(folder)
    if len(vocab["idx2sym"]) != model.config.vocab_size:
        raise ValueError(
            f"{folder}: vocab.pkl has {len(vocab['idx2sym'])} words but config.json has vocab_size "
            f"{model.config.vocab_size}"
        )
    if model.config.eos_token_id != tokenizer.eos_token_id:
        raise ValueError(
            f"{folder}: config.json has eos_token_id {model.config.eos_token_id} but <eos> is word "
            f"{tokenizer.eos_token_id} of vocab.pkl"
        )

    command = f"python -m custom_models.transfo_xl.convert_legacy {source} {destination}"
    command += f" --revision {revision}" if revision else ""
    command += f" --push_to_hub {push_to_hub}" if push_to_hub else ""
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    model_id = push_to_hub or str(destination)
    card = _model_card(model, vocab, model_id=model_id, provenance=provenance, command=command)
    (destination / "README.md").write_text(card, encoding="utf-8")
    logger.info("wrote %s", destination)
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(repo_id=push_to_hub, folder_path=destination, commit_message=f"Convert {source}")
        logger.info("pushed %s to %s", destination, push_to_hub)
    return destination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="local folder or Hub repository id of a transformers 4.x Transformer-XL")
    parser.add_argument("destination", help="new (or empty) folder for the converted model")
    parser.add_argument("--revision", help="branch, tag or commit of a Hub source")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="also upload the converted folder to this repo")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        convert(args.source, args.destination, revision=args.revision, push_to_hub=args.push_to_hub)
    except (ValueError, FileExistsError, pickle.UnpicklingError) as error:  # the input's fault, named by the message
        if os.environ.get("FINETUNE_RECIPES_DEBUG", "") not in ("", "0"):
            raise
        sys.stderr.write(f"error: {error}\n")  # one line and status 2, as the recipes (recipes/kit/errors.py)
        sys.exit(2)


if __name__ == "__main__":
    main()
