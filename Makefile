# Two entry points: `make demo` and `make test` (what .ci/run calls). Both create .venv if needed
# and install the exact versions of constraints.txt (pyproject.toml declares ranges).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_RUN ?= runs/demo
DEMO_ATLAS ?= atlases/demo
CONSTRAINTS := constraints.txt
LOW_VENV := .venv-lowest
# The fast subset the lowest-versions job runs (seconds each on 2 cores).
LOWEST_TESTS ?= tests/test_cli.py tests/test_capture.py tests/store/test_store.py \
	tests/atlas/test_build.py tests/attribution/test_dla.py tests/interventions/test_run.py \
	tests/export/test_neuron_record.py tests/test_docs.py

.PHONY: demo test test-slow test-llm test-cluster test-wheel test-lowest lint docs bench browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: this machine serves the CPU build of 2.13.0 from its disk.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e . -c $(CONSTRAINTS)
	touch $@

$(DEV_STAMP): $(STAMP) pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install -q -e '.[dev,ray,docs]' -c $(CONSTRAINTS)
	touch $@

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures dump --prompts_json docs/probe_prompts_list.json \
		--out_dir $(DEMO_RUN) --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures analyze --run_dir $(DEMO_RUN) --top_k 50
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures analyze --mode influence --run_dir $(DEMO_RUN) \
		--prompt_id seed_prompt --influence_metric act_grad --target_mode next_token \
		--target_token " Austin" --verify_top 20
	@inf=$$(ls $(DEMO_RUN)/analysis/influence_seed_prompt_act_grad_next_token_pos*_tok*.csv); \
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures analyze --mode write_scores --from $$inf \
		--top_n 50 --explicit_tokens " Austin| Texas" && \
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures signatures --run_dir $(DEMO_RUN) \
		--seed_prompt_id seed_prompt --neurons $$inf --top_n 50
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures atlas --out_dir $(DEMO_ATLAS) --max_tokens 30000 \
		--overwrite
	HF_HUB_OFFLINE=1 $(BIN)/neuron-signatures explain --atlas $(DEMO_ATLAS) --overwrite
	@echo
	@echo "Run folder: $(DEMO_RUN)   (manifest.json, activations/, analysis/)"
	@echo "Atlas:      $(DEMO_ATLAS)   (30k tokens of the embedded fortune corpus, explained offline)"
	@echo "Next:"
	@echo "  $(BIN)/neuron-signatures browse --run_dir $(DEMO_RUN)      # terminal browser"
	@echo "  $(BIN)/neuron-signatures app --run_dir $(DEMO_RUN)         # web app"
	@echo "  $(BIN)/neuron-signatures neuron --atlas $(DEMO_ATLAS) L17/N1152   # one neuron over the corpus"
	@echo "  $(BIN)/neuron-signatures app --atlas $(DEMO_ATLAS) --run_dir $(DEMO_RUN)   # atlas pages, search, Steer"
	@echo "  $(BIN)/neuron-signatures neurons --atlas $(DEMO_ATLAS) --query 'capital' --sort score   # find neurons by explanation"
	@echo "  $(BIN)/neuron-signatures export --atlas $(DEMO_ATLAS) --format html --neurons L17/N1152 --out exports/neurons.html"
	@echo "  $(BIN)/neuron-signatures intervene --prompt 'The capital of the state containing Dallas is' --set L17/N345=0 --tokens ' Austin'"
	@echo "  $(BIN)/neuron-signatures analyze --mode influence --run_dir $(DEMO_RUN) --prompt_id all --influence_metric dla"

lint: $(DEV_STAMP)
	$(BIN)/ruff check neuron_signatures tests benchmarks
	$(BIN)/ruff format --check neuron_signatures tests benchmarks
	$(BIN)/mypy neuron_signatures

# The web app's real-browser test needs Debian's chromium; install it when missing (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium could not be installed: the browser test will be skipped"

# The documentation site: every command and flag from the parsers, the API from docstrings.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 HF_HUB_OFFLINE=1 $(BIN)/mkdocs build --strict -q

test: $(DEV_STAMP) lint docs browser
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow and not wheel and not llm and not cluster" -q

test-slow: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow -q

# Builds the wheel, installs it into a fresh venv outside the repository, runs it from an empty
# folder (--help, a small atlas of the embedded model, the terminal view). About 1-2 minutes.
test-wheel: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m wheel -q

# A real two-node Ray cluster on 127.0.0.1 (ray start --head + ray start --address): atlas and dump
# by address, through ray://, by ray job submit; a node, the driver and the head lost. ~5-7 min.
test-cluster: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m cluster -q tests/scale/test_multinode.py

# A real OpenAI-compatible server: llama-cpp-python (built from source once, about 20 minutes on
# 2 cores; pip's wheel cache keeps it) in its own venv, serving the embedded Gemma 3 270M GGUF on
# 127.0.0.1. The base model cannot explain: this tests the plumbing end to end (10-30 minutes).
LLM_VENV := .venv-llm
$(LLM_VENV)/.installed:
	test -x $(LLM_VENV)/bin/python || $(PY) -m venv $(LLM_VENV)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(LLM_VENV)/bin/pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

test-llm: $(DEV_STAMP) $(LLM_VENV)/.installed
	NS_LLAMA_PYTHON=$(LLM_VENV)/bin/python HF_HUB_OFFLINE=1 $(BIN)/pytest -m llm -v tests/llm

# The lowest versions pyproject.toml allows (constraints-lowest.txt), in their own venv, on a fast
# subset of the tests. torch stays at the CPU build 2.13.0, the lowest it allows.
test-lowest:
	test -x $(LOW_VENV)/bin/python || $(PY) -m venv $(LOW_VENV)
	$(LOW_VENV)/bin/pip install -q torch==2.13.0
	$(LOW_VENV)/bin/pip install -q -e '.[dev,docs]' -c constraints-lowest.txt
	HF_HUB_OFFLINE=1 $(LOW_VENV)/bin/pytest -q -m "not slow and not wheel" $(LOWEST_TESTS)

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_dump.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_tui.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_web.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) $(LOW_VENV) $(LLM_VENV) build site *.egg-info .pytest_cache .ruff_cache .mypy_cache
