# Everything runs in a local virtualenv (.venv) that `make install` creates.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test demo bench lint sample clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of PyTorch first, so that bert-score does not pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	# bytecode, as a regular pip install has it (an editable install under PYTHONDONTWRITEBYTECODE has none)
	$(PY) -m compileall -q realtalk_cli
	touch $(STAMP)

test: install browser
	$(PY) -m pytest -q

# The report.html test drives Debian's chromium (Playwright cannot download its own browser here).
# Installed when we are root; otherwise that test is skipped with the reason (and fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "note: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium missing and not root (sudo apt-get install chromium); the browser test will be skipped"; fi; }

demo: install
	@rm -rf out/demo && mkdir -p out/demo
	$(VENV)/bin/realtalk convert data/sample/raw/Chat_S_Ana_Ben.xlsx -o out/demo/Chat_S_Ana_Ben.json --images-dir out/demo/images --force
	$(VENV)/bin/realtalk validate out/demo/Chat_S_Ana_Ben.json
	cmp out/demo/Chat_S_Ana_Ben.json data/sample/Chat_S_Ana_Ben.json && echo "demo: converted sheet matches data/sample/Chat_S_Ana_Ben.json"
	$(VENV)/bin/realtalk analyze stats out/demo/Chat_S_Ana_Ben.json
	REALTALK_CACHE_DIR=out/demo/cache $(VENV)/bin/realtalk probe out/demo/Chat_S_Ana_Ben.json --model offline:bm25 --context retrieval --out out/demo/probe
	$(VENV)/bin/realtalk analyze ei out/demo/Chat_S_Ana_Ben.json --out out/demo/ei
	# your own chat: a small invented WhatsApp export (data/sample/whatsapp/) converted and analysed
	$(VENV)/bin/realtalk convert "data/sample/whatsapp/WhatsApp Chat with Ben.txt" -o out/demo/whatsapp.json
	$(VENV)/bin/realtalk validate out/demo/whatsapp.json
	$(VENV)/bin/realtalk analyze stats out/demo/whatsapp.json
	$(VENV)/bin/realtalk analyze ei out/demo/whatsapp.json --out out/demo/ei-whatsapp

bench: install
	$(PY) bench/convert.py
	$(PY) bench/probe.py
	$(PY) bench/analyze.py
	$(PY) bench/simulate.py
	$(PY) bench/report.py
	$(PY) bench/retrieval.py

lint: install
	$(VENV)/bin/ruff check realtalk_cli tests bench data

sample: install
	$(PY) data/make_sample.py

clean:
	rm -rf $(VENV) out .pytest_cache
