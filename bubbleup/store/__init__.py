"""The run directory as one typed contract: layout (file names, schema version), manifest model,
row records, one writer (the orchestrator's) and one reader (``load_run``, everyone else's).

Import the submodule you need: the writer must not pull pandas into the orchestrator.
"""
