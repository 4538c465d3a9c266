"""One reconciler per kind, shared by `llmos operator` and `llmos run`.

A reconciler reads the object and what the executor observes of its workloads, decides the
next step, acts through the two seams in `seams` (an object store and a workload executor)
and returns the new status. It never sleeps or retries: the controller calls it again on
the next event, or after the interval it asks for.
"""
