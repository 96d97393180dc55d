# Prometheus's promtool for the /metrics format tests (tests/stream/test_metrics.py,
# tests/integration/test_metrics_live.py), from the distribution's package: the tests
# run `promtool check metrics` on the worker's text and fail when promtool is missing.
PROMTOOL ?= /usr/bin/promtool

.PHONY: promtool

## promtool: install Debian's prometheus (ships promtool) when it is missing (as root; apt-get update if needed)
promtool: $(PROMTOOL)

$(PROMTOOL):
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends prometheus \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }
