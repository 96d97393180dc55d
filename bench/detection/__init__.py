"""Detection benchmark: the detectors scored against labelled ground truth.

    python -m bench.detection [--quick] [--seeds N] [--jobs N] [--config PATH]
                              [--sources pipeline] [--alertnames a,b] [--out PATH]

Two parts, in one run:

1. Traffic (:mod:`bench.detection.traffic`): per seed, an incident run (every kind of
   :mod:`stream.offline.simulate.catalog` at every size, on keys drawn by spend and
   uniformly, with labelled bursts and sparse customers) and a clean run (a weekend and a
   Monday, bursts only), replayed through the pipeline. Scored by
   :mod:`bench.detection.scoring`: recall per kind and size and per money band, precision
   with bursts neutral, delays to when a firing came out, false alerts per 1,000 key-days
   on clean traffic, episodes per key-day. Alerts are matched by their labels, never by
   alertname, so a new detector's alerts are scored as they are.
2. Series (:mod:`bench.detection.series`): labelled plain metric series, scored as NAB
   scores (:mod:`bench.detection.nab`), for spendwatch's series path and a windowed
   Gaussian baseline.

Prints the tables and the targets (pass/fail), writes bench/results/detection.json.
"""
