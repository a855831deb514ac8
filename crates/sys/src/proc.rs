//! Process-level wrappers: fork with namespace flags, fd hygiene, terminal control.
