"""Benchmark harness for chat_server.py, side by side with ngircd (issues 4 and 9).

- ``run.py``: one command for the whole comparison; writes docs/benchmarks.md and the plot.
- ``loadgen.py``: the multi-process load generator and its correctness checks.
- ``servers.py``: starting, measuring (CPU, RSS) and stopping the servers under test.
- ``relay.c``: the calibration target, a minimal C relay; what the generator reaches against
  it is the generator's own ceiling.
- ``report.py``: medians, ratios, the markdown tables and the PNG plot.
- ``profile.py``: py-spy profile of our server under the same load.
"""
