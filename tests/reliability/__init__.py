"""Reliability tests: processes, crashes, cancellation, locks, fork, hostile input, files.

Every test runs scaled down by default; ``AGENTSESSION_FULL_SIZE=1`` runs it full size.
``docs/RELIABILITY.md`` gives what each test promises and the full-size figures.
"""
