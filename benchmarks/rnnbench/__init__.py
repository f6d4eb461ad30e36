"""The pieces of ``benchmarks/bench_rnn.py``, by job.

``problem`` (configurations, FLOPs, seeded inputs, the answer check), ``sides``
(rnnkit / NumPy reference / torch behind one interface), ``workers`` (the timing
protocol and the per-side worker processes), ``report`` (aggregation, tables,
goals) and ``chart``. ``bench_rnn.py`` is the command line and the driver.
"""
