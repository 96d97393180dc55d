"""Raw bytes to decisions, with no I/O: event models, ingest, pricing, buckets, detection,
the pipeline that chains them, and the alerts they produce. Both adapters
(:mod:`stream.kafka`, :mod:`stream.offline`) run this same code.
"""
