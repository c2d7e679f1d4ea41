"""The work_dir on disk: the only code that knows its file names and formats. ``layout`` spells every
name; ``trust`` is the door every reader of pickles passes; ``run_dir``, ``run_lock`` and ``run_info``
own the run directory, its lock and its run.json; ``inputs``, ``journal``, ``incoming``, ``claims``,
``results`` and ``logs`` own a batch's files; ``records`` is the one framed-record format; ``inspect``
is what the CLI reads of a run."""
