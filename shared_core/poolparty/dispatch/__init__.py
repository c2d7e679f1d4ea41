"""The dispatch loop and the classes it sequences: collecting results, watching jobs, submitting,
adopting a restarted run's jobs."""
