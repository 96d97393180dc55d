# The fuzz suite (tests/fuzz/) with its long budget: 50 times the examples of the default
# run in `make test`, random instead of derandomized (a few minutes; failures are kept
# in .hypothesis/ and replayed first next time), and the clean simulated weeks of all three
# worlds (make test replays one).
.PHONY: fuzz

## fuzz: property-based fuzzing of ingest, the worker's stages and replay, and 3 clean weeks (SPENDWATCH_FUZZ=long)
fuzz: install
	SPENDWATCH_FUZZ=long $(PY) -m pytest -q tests/fuzz \
		tests/stream/test_replay_simulated.py -k clean_simulated_week
