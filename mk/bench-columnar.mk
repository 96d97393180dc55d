# The columnar ingest benchmark (bench/columnar.py, issue 13 item 1): polars and pyarrow
# decoding, validating, de-duplicating, pricing and bucketing the same simulated files as
# the orjson loop (the reference) and replay's reading (today's path), dense and sparse
# traffic with injected bad lines. Prints events/s and the ratio to the reference (median
# of 3), checks both engines against replay's sums and rejections, and writes
# bench/results/columnar.json. About 5 minutes on 2 cores; ARGS=--no-rss skips the peak
# memory runs, ARGS='--events 30000 --repeat 1' is a quick look.

.PHONY: bench-columnar

## bench-columnar: polars vs pyarrow columnar ingest against the orjson loop and replay
bench-columnar: install
	nice $(PY) bench/columnar.py $(ARGS)
