# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv and install cnnlab into it when missing; both are safe to repeat.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_RUN ?= runs/demo-lenet5_1998

# Use the shared real datasets beside the checkout when they are there.
ifneq ($(wildcard ../shared/datasets/mnist),)
export CNNLAB_DATA ?= $(abspath ../shared/datasets)
endif

.PHONY: demo test lint format bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Train LeNet-5 as in LeCun et al. 1998 on MNIST; a second call resumes or re-reports it.
demo: $(STAMP)
	@if [ -f $(DEMO_RUN)/config.json ]; then \
		$(BIN)/cnnlab train --resume $(DEMO_RUN); \
	else \
		$(BIN)/cnnlab train lenet5_1998 --data mnist --out $(DEMO_RUN); \
	fi

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/mnist_lenet.py

docs: $(STAMP)
	$(BIN)/python tools/models_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
