# The two commands: `make demo` (the nightly job end to end on generated data) and
# `make test` (`make test-fast` while working). All create or reuse a local virtual
# environment in .venv, with the dev extra (the test tiers, ruff, mypy, build).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo
DEMO_DB := sqlite:///$(DEMO)/linkage.db
DEMO_ACCOUNTS ?= 200000

.PHONY: install demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO)/secret: | $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $@
	chmod 600 $@

$(DEMO)/data/truth.csv: | $(STAMP)
	$(BIN)/linkage generate --out $(DEMO)/data --scenario mixed --accounts $(DEMO_ACCOUNTS) --seed 7

demo: $(STAMP) $(DEMO)/secret $(DEMO)/data/truth.csv
	$(BIN)/linkage run --input $(DEMO)/data --db $(DEMO_DB) --secret-file $(DEMO)/secret
	$(BIN)/linkage evaluate --truth $(DEMO)/data/truth.csv --db $(DEMO_DB)
	$(BIN)/linkage export memberships --db $(DEMO_DB) --out $(DEMO)/memberships.csv
	@echo "The online check against this store (docs/operations.md), then POST /v1/check:"
	@echo "  $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > $(DEMO)/api-token"
	@echo "  LINKAGE_API_TOKEN_FILE=$(DEMO)/api-token $(BIN)/linkage serve --db $(DEMO_DB) --secret-file $(DEMO)/secret --port 8080"
	@echo "  curl -s localhost:8080/healthz; open http://localhost:8080/docs"

lint: $(STAMP)
	$(BIN)/ruff check linkage tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy

# Every tier (Spark, Chromium, packaging, PostgreSQL when LINKAGE_TEST_PG_URL is set) on
# TEST_WORKERS processes. A file runs whole on one worker, files handed out in the order
# tests/conftest.py gives them (the longest first).
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
FAST_MARKERS = not slow and not spark and not browser and not packaging

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

# The inner loop: no end-to-end runs, Spark, browser or packaging, and at most
# LINKAGE_TEST_MAX_EXAMPLES examples per property-based test.
test-fast: $(STAMP)
	LINKAGE_TEST_MAX_EXAMPLES=$${LINKAGE_TEST_MAX_EXAMPLES:-10} \
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "$(FAST_MARKERS)"

# Benchmarks (docs/benchmarks.md): every run holds the machine-wide heavy-run lock, since a
# 1M-account night takes ~2 GB. `make bench BENCH_SCALES="100k 1m 5m"` adds 5M (~9 GB, and ~12 GB for its peer).
BENCH_SCALES ?= 100k 1m
BENCH_REPEAT ?= 3
BENCH_LOCK ?= flock /tmp/linkage-heavy.lock

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BENCH_LOCK) $(BIN)/python bench/scale.py --scale $(BENCH_SCALES) --repeat $(BENCH_REPEAT)

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache .mypy_cache .hypothesis
