"""Herald's benchmarks. Each scenario runs as `python -m perf SCENARIO [--quick]`, starts the
servers it needs (as the tests do) unless HERALD_* URLs are set, measures its baseline in the
same run, and prints one JSON object as its last line. Figures live in docs/performance.md.
"""
