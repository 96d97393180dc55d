# Headless Chromium for the HTML report test (tests/stream/test_report.py), from the
# distribution's package: the test drives it with the playwright Python package and
# never downloads a browser build of its own.
CHROMIUM ?= /usr/bin/chromium

.PHONY: chromium

## chromium: install Debian's chromium when it is missing (as root; apt-get update if needed)
chromium: $(CHROMIUM)

$(CHROMIUM):
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends chromium \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
