"""Test-wide settings: never touch the network (set before huggingface_hub is imported); token streams
and trained tokenizers cached in a folder of this session, not in the user's cache; one thread a pytest-xdist
worker."""

import atexit
import os
import shutil
import tempfile

os.environ["FINETUNE_RECIPES_CACHE"] = tempfile.mkdtemp(prefix="finetune-recipes-tests-")
atexit.register(shutil.rmtree, os.environ["FINETUNE_RECIPES_CACHE"], ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`-n`): one thread a worker and for the processes it starts, so N workers keep N cores busy
# instead of N x N threads waiting on each other (set before torch is imported: it reads this once).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

import functools  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch.distributed.elastic.utils.distributed import get_free_port  # noqa: E402

from tests import tiny_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Makes the child process unable to import this repository: a model that loads there does so from
# the code shipped in its folder (trust_remote_code), not from our packages.
_BLOCK_PROJECT_IMPORTS = textwrap.dedent(
    """
    import sys, importlib.abc
    class _BlockProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"custom_models", "data", "recipes"}:
                raise ImportError(f"{name} must not be imported in a clean process")
            return None
    sys.meta_path.insert(0, _BlockProject())
    """
)

_FORWARD_SCRIPT = textwrap.dedent(
    """
    import sys, torch, transformers
    from safetensors.torch import load_file, save_file
    model_dir, auto_class, inputs_file, output_name, out_file, remote_code = sys.argv[1:]
    model = getattr(transformers, auto_class).from_pretrained(model_dir, trust_remote_code=True).eval()
    shipped = type(model).__module__.startswith("transformers_modules")
    assert shipped == (remote_code == "yes"), type(model).__module__
    with torch.no_grad():
        output = model(**load_file(inputs_file))
    save_file({"output": getattr(output, output_name).contiguous()}, out_file)
    """
)


def run_in_clean_process(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs `script` in a fresh interpreter, started in `cwd`, that cannot import this repository."""
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_PROJECT_IMPORTS + script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"clean process failed:\n{result.stderr[-4000:]}")
    return result


def repeats_bit_for_bit_on_two_threads(gradients, *, repeats: int = 3) -> bool:
    """Whether `gradients()` (a fresh backward pass, its gradients as one tensor) gives the same bits `repeats` more
    times on two CPU threads: an op that adds repeated ids' gradients with atomics changes them between calls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = gradients()
        return all(torch.equal(first, gradients()) for _ in range(repeats))
    finally:
        torch.set_num_threads(threads)


def accelerate_command(
    script: Path,
    *args: str,
    num_processes: int = 2,
    config_file: str = "cpu_multi.yaml",
    port: int | None = None,
    launcher_flags: tuple[str, ...] = (),
) -> list[str]:
    """The `accelerate launch` command line `accelerate_launch` runs (its docstring), with `launcher_flags` (e.g. a
    machine's `--num_machines/--machine_rank/--main_process_ip`) before the script; a free port unless `port`."""
    if num_processes > 1:
        setup = ["--config_file", str(REPO / "recipes" / "accelerate_configs" / config_file)]
    else:
        setup = ["--num_machines", "1", "--dynamo_backend", "no"]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *setup,
        "--num_processes",
        str(num_processes),
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(port or get_free_port()),
        *launcher_flags,
        str(script),
        *args,
    ]


def launch_environment() -> dict[str, str]:
    """The environment of a launch: no GPU, one thread a process (two processes on two cores do not oversubscribe),
    the repository on the import path (a worker script under tests/ imports `tests.*`; the editable install covers
    only the packages)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def accelerate_launch(
    script: Path,
    *args: str,
    num_processes: int = 2,
    cwd: Path | None = None,
    config_file: str = "cpu_multi.yaml",
    check: bool = True,
) -> str:
    """Runs `accelerate launch` on `script` and returns the processes' stdout + stderr; raises with the
    tail of the log if any process fails, or leaves its process group alive behind it (the warning of
    `recipes.kit.distributed.leave_process_group`: its threads could abort the exit), unless not `check`.

    Several processes start from the shipped `recipes/accelerate_configs/<config_file>` (default
    `cpu_multi.yaml`: DDP over gloo on a CPU-only machine, where `--cpu` would silently start one;
    `fsdp_cpu.yaml`: FSDP2), so the tests check that config too; mixed precision is left to the recipe's
    own flags. One thread each, so two processes on two cores do not oversubscribe."""
    command = accelerate_command(script, *args, num_processes=num_processes, config_file=config_file)
    result = subprocess.run(command, cwd=cwd, env=launch_environment(), capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"accelerate launch failed ({result.returncode}):\n{log[-4000:]}")
    from recipes.kit.distributed import GROUP_OUTLIVED_WARNING

    if check and GROUP_OUTLIVED_WARNING in log:
        raise AssertionError(f"a process left its process group alive:\n{log[-4000:]}")
    return log


# Recipes whose tokenizer is trained on the fly (WordPiece / BPE): runs that are compared with each other load one
# trained here. Each run would train the same vocabulary itself (`data.tokenizers` is deterministic); one shared
# tokenizer keeps the comparison about the runs alone.
_SHARED_TOKENIZERS = {"sentiment": ("wordpiece", "sentiment/train.tsv"), "closed_book_qa": ("bpe", "lm/train.txt")}


@functools.cache
def sentiment_tokenizer_dir() -> Path:
    """A folder holding the WordPiece tokenizer the sentiment recipe's tiny.yaml trains (300 asked, 274 reached on
    the sample sentences, `[PAD]` id 0), trained once per session; the same vocabulary in any process."""
    from data.sentiment import load_sentiment_dataset
    from data.tokenizers import train_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="sentiment-tokenizer-", dir=os.environ["FINETUNE_RECIPES_CACHE"]))
    sentences = load_sentiment_dataset(train_file=str(REPO / "data/samples/sentiment/train.tsv"))["train"]["text"]
    train_tokenizer(sentences, kind="wordpiece", vocab_size=300).save_pretrained(folder)
    return folder


def shared_tokenizer_args(task: str, folder: Path) -> list[str]:
    """`--tokenizer_name` flags pointing at one tokenizer trained for `task` in `folder` (none for the recipes
    not in `_SHARED_TOKENIZERS`, whose tiny runs train a word-level one)."""
    from data.tokenizers import train_tokenizer

    if task not in _SHARED_TOKENIZERS:
        return []
    kind, sample = _SHARED_TOKENIZERS[task]
    lines = (REPO / "data" / "samples" / sample).read_text(encoding="utf-8").splitlines()
    train_tokenizer(lines, kind=kind, vocab_size=400).save_pretrained(folder / "tokenizer")
    return ["--tokenizer_name", str(folder / "tokenizer")]


@pytest.fixture
def shared_tokenizer():
    """`shared_tokenizer_args` as a fixture."""
    return shared_tokenizer_args


@pytest.fixture
def clean_process():
    """`run_in_clean_process` as a fixture, for tests that run their own script in a clean process."""
    return run_in_clean_process


@pytest.fixture
def launch():
    """`accelerate_launch` as a fixture, for tests that start recipes in several processes."""
    return accelerate_launch


@pytest.fixture
def forward_in_clean_process(tmp_path):
    """`f(model_dir, auto_class, inputs, output_name="logits", remote_code=True) -> Tensor`: loads
    `model_dir` with `transformers.<auto_class>.from_pretrained(..., trust_remote_code=True)` in a clean
    process and returns `getattr(model(**inputs), output_name)`, computed there in eval mode. The class
    must come from the code shipped in the folder (`remote_code`), or from `transformers` itself."""

    def forward(
        model_dir,
        auto_class: str,
        inputs: dict[str, torch.Tensor],
        output_name: str = "logits",
        remote_code: bool = True,
    ):
        workdir = tmp_path / "clean_process"
        workdir.mkdir(exist_ok=True)
        inputs_file, out_file = workdir / "inputs.safetensors", workdir / "output.safetensors"
        save_file({k: v.contiguous() for k, v in inputs.items()}, inputs_file)
        run_in_clean_process(
            _FORWARD_SCRIPT,
            str(model_dir),
            auto_class,
            str(inputs_file),
            output_name,
            str(out_file),
            "yes" if remote_code else "no",
            cwd=workdir,
        )
        return load_file(out_file)["output"]

    return forward


# The smallest model of each recipe that the tests train, as `--config_overrides` values (sentiment: the one
# tiny.yaml builds; the language models with one layer); `tiny_overrides(task, dropout=False)` adds the keys that
# switch every dropout off, for runs compared with each other that must compute the same function.
TINY_OVERRIDES = {
    "sentiment": tiny_models.as_config_overrides(tiny_models.BERT),
    "closed_book_qa": tiny_models.as_config_overrides({**tiny_models.GPT2, "n_layer": 1}),
    "nce_lm": tiny_models.as_config_overrides({**tiny_models.GPT2, "n_layer": 1}),
    "transformer_xl": tiny_models.as_config_overrides({**tiny_models.TRANSFO_XL, "n_layer": 1}),
}
_NO_DROPOUT = {
    "sentiment": tiny_models.as_config_overrides(tiny_models.BERT_NO_DROPOUT),
    "closed_book_qa": tiny_models.as_config_overrides(tiny_models.GPT2_NO_DROPOUT),
    "nce_lm": tiny_models.as_config_overrides(tiny_models.GPT2_NO_DROPOUT),
    "transformer_xl": tiny_models.as_config_overrides(tiny_models.TRANSFO_XL_NO_DROPOUT),
}


def yaml_without(config: Path, folder: Path, *keys: str, extra: str = "") -> str:
    """A copy of `config` without the lines of `keys` (a YAML value the command line cannot unset), plus `extra`."""
    lines = [line for line in config.read_text().splitlines() if not line.startswith(tuple(f"{k}:" for k in keys))]
    copy = folder / config.name
    copy.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return str(copy)


def tiny_overrides(task: str, *, dropout: bool = True) -> list[str]:
    """`["--config_overrides", TINY_OVERRIDES[task]]`, with every dropout off unless `dropout`."""
    overrides = TINY_OVERRIDES[task] if dropout else f"{TINY_OVERRIDES[task]},{_NO_DROPOUT[task]}"
    return ["--config_overrides", overrides]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`tiny_run(task) -> Path`: the output folder of the task's `tiny.yaml` run as shipped (plus
    `--logging_steps 1`, so `trainer_state.json` holds every training loss; the tokenizer trained by the
    recipe, as a user's run trains it), trained in-process once per session on one thread. Read it, never
    write into it: other tests share it."""
    import importlib

    from recipes.kit.command_line import parse_config

    folders: dict[str, Path] = {}

    def run(task: str) -> Path:
        if task not in folders:
            output_dir = tmp_path_factory.mktemp(f"tiny-{task}") / "out"
            recipe = importlib.import_module(f"recipes.{task}.train")
            argv = [
                str(REPO / "recipes" / task / "configs" / "tiny.yaml"),
                "--output_dir",
                str(output_dir),
                "--logging_steps",
                "1",
            ]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # tiny models on a shared machine: more threads only fight other jobs
            try:
                recipe.main(*parse_config(*recipe.CONFIG_CLASSES, argv=argv))
            finally:
                torch.set_num_threads(threads)
            folders[task] = output_dir
        return folders[task]

    return run


class LocalHub:
    """Stands in for the Hub boundary only: `HfApi.create_repo`, `create_commit` and `upload_folder` write
    into `root/<repo_id>/`, so the real `push_to_hub` / `Trainer.push_to_hub` code runs end to end offline.
    `calls` records (method, repo_id, token); `snapshots[repo_id]` holds a copy of the repository after
    each commit, so a test can load what a push made during training left on the "Hub"."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, object]] = []
        self.snapshots: dict[str, list[Path]] = {}

    def _snapshot(self, repo_id: str) -> None:
        import shutil

        snapshots = self.snapshots.setdefault(repo_id, [])
        snapshots.append(shutil.copytree(self.repo(repo_id), self.root / ".snapshots" / repo_id / str(len(snapshots))))

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def create_repo(self, api, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        from huggingface_hub import RepoUrl

        self.calls.append(("create_repo", repo_id, token))
        self.repo(repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, api, repo_id, operations, *, commit_message="", token=None, run_as_future=False, **kwargs):
        self.calls.append(("create_commit", repo_id, token))
        for operation in operations:
            target = self.repo(repo_id) / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            source = operation.path_or_fileobj
            data = Path(source).read_bytes() if isinstance(source, str | Path) else source
            target.write_bytes(data if isinstance(data, bytes) else data.read())
        self._snapshot(repo_id)
        return self._result(run_as_future)

    def upload_folder(
        self,
        api,
        *,
        repo_id,
        folder_path,
        path_in_repo=None,
        token=None,
        allow_patterns=None,
        ignore_patterns=None,
        run_as_future=False,
        **kwargs,
    ):
        import fnmatch

        self.calls.append(("upload_folder", repo_id, token))
        folder = Path(folder_path)
        as_list = lambda p: [p] if isinstance(p, str) else list(p or [])  # noqa: E731
        for source in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = source.relative_to(folder).as_posix()
            if allow_patterns and not any(fnmatch.fnmatch(relative, pat) for pat in as_list(allow_patterns)):
                continue
            if any(
                fnmatch.fnmatch(relative, pat) or fnmatch.fnmatch(relative.split("/")[0], pat)
                for pat in as_list(ignore_patterns)
            ):
                continue
            target = self.repo(repo_id) / (path_in_repo or "") / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        self._snapshot(repo_id)
        return self._result(run_as_future)

    @staticmethod
    def _result(run_as_future: bool):
        if not run_as_future:
            return None
        from concurrent.futures import Future

        future = Future()
        future.set_result(None)
        return future


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A `LocalHub` patched into `huggingface_hub.HfApi` for the duration of a test."""
    from huggingface_hub import HfApi

    hub = LocalHub(tmp_path / "hub")
    for name in ("create_repo", "create_commit", "upload_folder"):
        bound = getattr(hub, name)
        monkeypatch.setattr(HfApi, name, lambda api, *args, _bound=bound, **kwargs: _bound(api, *args, **kwargs))
    return hub
