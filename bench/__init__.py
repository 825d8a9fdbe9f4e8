"""Benchmark harness for chat_server.py, side by side with ngircd (issue 4).

- ``run.py``: one command for the whole comparison; writes docs/benchmarks.md and the plot.
- ``loadgen.py``: the multi-process load generator and its correctness checks.
- ``servers.py``: starting, measuring (CPU, RSS) and stopping the servers under test.
- ``report.py``: medians, ratios, the markdown tables and the PNG plot.
- ``profile.py``: py-spy profile of our server under the same load.
"""
