"""`recipes.kit.errors`: what transformers and the Hub raise becomes one line that names the field to fix."""

import httpx2  # huggingface_hub 2.x builds its HTTP errors on httpx2 responses
from huggingface_hub.errors import RevisionNotFoundError

from recipes.kit.arguments import ModelArguments
from recipes.kit.errors import hub_ids, user_error_message


def test_remote_code_refusal_becomes_one_line_saying_what_the_flag_runs():
    # transformers' `resolve_trust_remote_code` message, as 5.x raises it
    error = ValueError(
        "The repository someone/nce-lm contains custom code which must be executed to correctly load the model. "
        "You can inspect the repository content at https://hf.co/someone/nce-lm .\n"
        "Please pass the argument `trust_remote_code=True` to allow custom code to be run."
    )
    message = user_error_message(error, {"model_name_or_path": "someone/nce-lm"})
    assert message.startswith("someone/nce-lm ships its own model code") and "\n" not in message
    assert "--trust_remote_code true" in message and "runs the Python files of that repository" in message


def test_missing_revision_is_named():
    model_args = ModelArguments(model_name_or_path="someone/tiny", model_revision="v9")
    request = httpx2.Request("GET", "https://huggingface.co/api/models/someone/tiny/revision/v9")
    error = OSError("v9 is not a valid git identifier")
    error.__cause__ = RevisionNotFoundError("Revision Not Found", response=httpx2.Response(404, request=request))
    message = user_error_message(error, hub_ids([model_args]))
    assert message == (
        "model_name_or_path 'someone/tiny' / model_revision 'v9': the repository has no such revision (branch, tag "
        "or commit); check model_revision"
    )
