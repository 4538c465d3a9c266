"""Reconcilers: read the children's state, decide the next step, return the new status.
They never sleep or retry: the handlers call them again on the next tick."""
