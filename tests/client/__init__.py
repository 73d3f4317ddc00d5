"""Tests of multiengine.client: the MultiEngine client's methods, results and errors, the
asyncio clients, executors, live output, progress."""
