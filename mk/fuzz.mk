# The fuzz suite (tests/fuzz/) with its long budget: 50 times the examples of the default
# run in `make test`, random instead of derandomized (a few minutes; failures are kept
# in .hypothesis/ and replayed first next time), and the simulated incident days and clean
# weeks of all three worlds each (make test replays one of each).
.PHONY: fuzz

## fuzz: property-based fuzzing of ingest, the worker's stages and replay, and 3 worlds of incidents and of clean weeks (SPENDWATCH_FUZZ=long)
fuzz: install
	SPENDWATCH_FUZZ=long $(PY) -m pytest -q tests/fuzz \
		tests/stream/test_replay_simulated.py
