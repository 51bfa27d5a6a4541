# personae: `make demo` runs the whole pipeline on synthetic demo data; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/personae synth $(DEMO) --customers 5000 --seed 42
	$(BIN)/personae run --project $(DEMO)
	$(BIN)/personae export traits --project $(DEMO) --out $(DEMO)/out/traits.csv
	$(BIN)/personae export predictions --project $(DEMO) --out $(DEMO)/out/predictions.csv
	$(BIN)/personae export memberships --project $(DEMO) --out $(DEMO)/out/memberships.csv
	$(BIN)/personae segments --project $(DEMO)
	@echo ""
	@echo "Demo data:     $(DEMO)/*.csv (planted truth in $(DEMO)/truth/)"
	@echo "Store:         $(DEMO)/.personae/personae.duckdb (readers open the copy in $(DEMO)/.personae/published/)"
	@echo "Traits:        $(DEMO)/out/traits.csv (defined in docs/traits.md)"
	@echo "Predictions:   $(DEMO)/out/predictions.csv (CLV, P(alive), churn risk)"
	@echo "Segments:      $(DEMO)/out/memberships.csv (customer, segmentation, segment; docs/segments.md)"
	@echo "Look around:   $(BIN)/personae status --project $(DEMO)"
	@echo "               $(BIN)/personae segments show clusters --project $(DEMO)"

test: $(STAMP)
	bash scripts/ensure-java.sh
	bash scripts/ensure-postgres.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

# lifetimes (the models benchmark's baseline) needs an old numeric stack: its own venv
LIFETIMES := /tmp/lt-venv/bin/python
$(LIFETIMES):
	$(PYTHON) -m venv /tmp/lt-venv
	/tmp/lt-venv/bin/pip install --quiet numpy==1.26.4 scipy==1.11.4 pandas==1.5.3 \
		autograd==1.6.2 dill "setuptools<70" lifetimes==0.11.3

# every benchmark, each rewriting its section of docs/benchmarks.md; on an idle machine,
# about an hour and 40 GB of disk in /tmp (bench_scale goes to 10 M customers)
bench: $(STAMP) $(LIFETIMES)
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_traits.py
	$(BIN)/python benchmarks/bench_models.py --lifetimes-python $(LIFETIMES)
	$(BIN)/python benchmarks/bench_stages.py
	$(BIN)/python benchmarks/bench_segments.py
	$(BIN)/python benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
