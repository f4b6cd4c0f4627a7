#!/usr/bin/env bash
# Reruns the multi-process tests in one loop, to catch a rare failure at teardown (the gloo abort at exit,
# recipes/kit/distributed.py): stops at the first failure and prints how many passes ran and how long they took.
# Not collected by pytest. Usage, from the repository root with the venv on PATH:
#   tests/stress_multi_process.sh [PASSES] [stream|all]
#     stream: the two-process stream-continuity test only (default); all: every test that launches processes.
#   WORKERS=2 runs two test files at once (pytest-xdist, in the dev extra): a busier machine, and on two
#   cores a pass of `all` in about 450 s instead of 530 s. DURATIONS=0 lists every test's time (default: the 5 longest).
set -u
passes=${1:-30}
selection=${2:-stream}
stream=("tests/recipes/test_transformer_xl.py::test_each_rank_continues_its_own_streams_and_memory_across_steps")
all=(
  "${stream[@]}"
  "tests/recipes/test_transformer_xl.py::test_evaluation_scores_the_same_tokens_to_the_same_perplexity_on_1_2_and_4_processes"
  "tests/data/test_token_cache.py::test_two_processes_tokenise_once_and_cut_the_streams_of_encode_stream"
  "tests/recipes/test_closed_book_qa.py::test_two_processes_score_each_question_exactly_once"
  "tests/recipes/test_modes.py::test_two_processes_predict_each_line_once_in_input_order"
  "tests/recipes/test_sentiment.py::test_four_processes_train_with_one_tokenizer_trained_from_the_data"
  "tests/recipes/kit/test_hp_search.py::test_a_search_on_two_processes_runs_each_trial_on_both_with_the_same_values"
  "tests/recipes/kit/test_adapters.py::test_a_killed_adapter_run_resumes_and_its_rerun_evaluates_the_folder"
  "tests/recipes/test_fsdp.py"
  "tests/recipes/test_scale_out.py"
  "tests/recipes/test_evaluation_layout.py"
  "tests/recipes/test_validation_split.py"
  "tests/recipes/test_resume_other_count.py"
  "tests/recipes/test_two_machines.py"
  "tests/recipes/test_lost_machine.py"
  "tests/recipes/kit/test_command_line.py::test_a_failure_after_a_collective_exits_with_its_line_and_no_gloo_thread_left"
)
if [ "$selection" = all ]; then tests=("${all[@]}"); else tests=("${stream[@]}"); fi
parallel=()
if [ "${WORKERS:-1}" -gt 1 ]; then parallel=(-n "$WORKERS"); fi
start=$SECONDS
for pass in $(seq "$passes"); do
  if ! python -m pytest -q -x --durations="${DURATIONS:-5}" "${parallel[@]}" "${tests[@]}"; then
    echo "FAILED in pass $pass of $passes after $((SECONDS - start)) s"
    exit 1
  fi
  echo "pass $pass of $passes done, $((SECONDS - start)) s so far"
done
echo "ALL $passes passes of ${#tests[@]} test selections passed in $((SECONDS - start)) s"
