"""The ``poolparty`` command: one module per subcommand (``status``, ``resume``, ``cancel``, ``logs``,
``clean``, ``doctor``, ``config``), assembled in :mod:`poolparty.cli.main`."""
