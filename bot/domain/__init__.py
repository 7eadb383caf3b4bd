"""The domain: pricing, budgets, requests, media, access rules, outcomes and the job lifecycle.

Pure: nothing here imports Discord, HTTP or storage code. Storage, the runner and the cogs import
these modules, never the other way round.
"""
