"""The one place the version is set: of poolparty-hpc and of its two plugins, prefect-poolparty and
snakemake-executor-plugin-poolparty, which require this exact version of the core (their builds read
this file). Released together, so a plugin never meets a core it was not tested with."""
__version__ = "0.2.0"
