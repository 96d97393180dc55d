# The detection benchmark (bench/detection/): the detectors scored against labelled
# incidents, bursts and clean days of simulated traffic, and against NAB-style labelled
# series next to a windowed-Gaussian baseline. Prints the figures and the targets
# (pass/fail) and writes bench/results/detection.json. ARGS=--quick: one seed, under a
# minute (what tests/bench/test_detection_smoke.py runs).

.PHONY: bench-detection

## bench-detection: detection recall, precision, delay and false alerts against ground truth
bench-detection: install
	$(PY) -m bench.detection $(ARGS)
