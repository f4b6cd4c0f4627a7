"""The machinery every recipe shares, as one package: a recipe's `train.py` is the story (the labelled steps of
its `main`), and each step is one call into a module here.

Imports run one way: a recipe (`recipes/<task>/`) imports the kit; the kit imports `custom_models` and `data`,
never a recipe; nothing in `custom_models` or `data` imports the kit. Inside the kit, from the bottom:
`errors` -> `launch_checks`, `arguments` (the dataclasses: values and field checks) -> `loading_options` ->
`adapters` -> `model_config` -> `run_lock`, `lifecycle`, `model_loading` (the Model step); `callbacks`, `distributed`,
`model_card`, `dry_run` -> `trainers` -> `run_steps`, `data_steps`, `generation`, `language_models`;
`hp_search` runs a search of whole runs; `lost_peers` stops a run that lost a process (after `lifecycle`);
`command_line` parses a recipe's command line and runs its `main`.
`tests/recipes/kit/test_imports.py` fails on a cycle.
"""
