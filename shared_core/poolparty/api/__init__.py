"""The faces users touch: :class:`Pool` and :class:`Executor`. No scheduler knowledge here."""
