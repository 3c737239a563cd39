"""Failover-drill engine: a continuous writer, a per-member sampler, the analysis
of what they recorded, and the report (JSON, Markdown, PNG).

The modules ``hastack.ha.pg_drill_recorder`` and ``hastack.ha.drill_report`` are
thin shells over this package.
"""
