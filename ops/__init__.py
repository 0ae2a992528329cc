"""Operator tools that read more than one service's database on purpose.

Each service owns its data, and its own code never reads another's tables. Reconciling the two
ledgers after an incident or a restore needs both at once; that is this package's one job, and
its name says so. It only reads.
"""
