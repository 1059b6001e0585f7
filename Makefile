# Two entry points: `make demo` and `make test` (what .ci/run calls). Both create .venv if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_RUN ?= runs/demo
DEMO_ATLAS ?= atlases/demo

.PHONY: demo test test-slow lint bench browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: this machine serves the CPU build of 2.13.0 from its disk.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[dev,ray]'
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

test: $(DEV_STAMP) lint browser
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" -q

test-slow: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow -q

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_dump.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_tui.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_web.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
