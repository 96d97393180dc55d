"""The file adapter: replay, backtest, the HTML report, key series and the simulator.

The same path from raw lines to decisions as the worker (:mod:`stream.core`), driven by
event time from files instead of topics.
"""
