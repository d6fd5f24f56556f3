"""Business actions: the ONLY code that changes state and creates events.

Each action takes an ``AsyncSession`` already inside a transaction and never commits; the caller
(web/deps.py, a worker, the CLI) owns the unit of work. ``check``-style actions take an ``Actor`` and
enforce permissions; the others trust their caller (workers, importers, the CLI).
"""
