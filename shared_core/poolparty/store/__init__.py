"""The work_dir on disk: the only code that knows its file names and formats (layout, records, inputs,
results, journal, claims, logs) and what the CLI reads of a run (inspect)."""
