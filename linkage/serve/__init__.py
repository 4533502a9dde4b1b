"""``linkage serve``: the online check between nightly runs.

Sign-up and payment systems ask whether a new or changed account shares keys with the clusters
of the latest run. :mod:`linkage.serve.keys` derives the account's keys as a night would,
:mod:`linkage.serve.index` holds the latest run's keys in memory and weighs what is shared,
:mod:`linkage.serve.app` is the HTTP service (FastAPI on uvicorn), which swaps to a newer run
without a restart. Needs the ``serve`` extra: ``pip install 'linkage[serve]'``.
"""
