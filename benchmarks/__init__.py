"""Benchmarks: agentsession against the Agents SDK's sessions and raw SQLite.

Run everything with ``python -m benchmarks.run`` (``--quick`` for a short run); see
``benchmarks/README.md``.
"""
