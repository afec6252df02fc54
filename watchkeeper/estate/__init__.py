"""The camera estate audit: which cameras an organisation runs, who made them, what
they can do, and a plan to replace the risky ones.

``discover`` finds devices (WS-Discovery, a bounded TCP sweep of named networks),
``importer`` reads asset lists, ``probe`` asks each device read-only what it is,
``identify`` names the real maker with evidence, ``rules`` turns facts into dated,
sourced findings, ``register`` stores it all, and ``report`` writes the plan.
Permissions and audit events are in :mod:`watchkeeper.governance.estate`.
"""
