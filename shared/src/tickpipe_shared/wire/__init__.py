"""Wire formats of the topics: fetch requests, fetch units, raw payloads, batches, failures.

Each module documents its format; ``docs/topics/`` has the contracts for other systems.
"""
