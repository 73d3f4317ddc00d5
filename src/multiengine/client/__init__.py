"""Clients: the I/O core, results, and the blocking MultiEngine client."""
