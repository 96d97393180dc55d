# Mutation testing of detectors/ with mutmut 3 (configured in pyproject.toml, [tool.mutmut]).
# mutmut mutates a copy, never the files it is given: the copy lives in out/mutation/, so
# nothing in the working tree changes while others work in it. Each mutant runs only the
# fast detector tests that reach the mutated function (tests/detectors and the doctests of
# detectors/), two at a time. Not part of `make test`: on 2 cores spend_spike alone (1,152
# mutants, 2026-12-03) takes about 18 minutes, and all of detectors/ (about 3,600) hours:
# margin_breach's tests take about 10 s a mutant since its pins grew. MUTANTS narrows a run to
# mutant names (globs): make mutation MUTANTS='detectors.spend_spike.* detectors.episode.*'
# (the score's total still counts every mutant).
# mutmut 3 mutates code inside functions only: the detectors' parameter defaults (the
# README's numbers) are pinned by tests/detectors/test_readme_numbers.py instead.
MUTATION_DIR ?= out/mutation
MUTATION_JOBS ?= 2
MUTANTS ?=
MUTMUT = $(abspath $(VENV))/bin/mutmut

.PHONY: mutation

## mutation: mutation score of detectors/ against its fast tests (out/mutation/; hours, or MUTANTS=...)
mutation: install
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	tar -c --exclude=__pycache__ --exclude=.hypothesis pyproject.toml detectors tests \
		| tar -x -C $(MUTATION_DIR)
	cd $(MUTATION_DIR) && PYTHONPATH=$(CURDIR)/mk $(MUTMUT) run --max-children $(MUTATION_JOBS) $(MUTANTS)
	cd $(MUTATION_DIR) && PYTHONPATH=$(CURDIR)/mk $(MUTMUT) export-cicd-stats >/dev/null
	cd $(MUTATION_DIR) && PYTHONPATH=$(CURDIR)/mk $(MUTMUT) results > survivors.txt || true
	$(PY) -c 'import json, sys; print("mutation score: {killed} killed / {total} mutants;" \
		" {survived} survived, {timeout} timed out, {no_tests} untested".format(**json.load( \
		open(sys.argv[1]))))' $(MUTATION_DIR)/mutants/mutmut-cicd-stats.json
	@echo "survivors: $(MUTATION_DIR)/survivors.txt (cd $(MUTATION_DIR); mutmut show NAME)"
