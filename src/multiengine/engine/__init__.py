"""The engine: a lean Python process with a persistent namespace.

It imports neither IPython nor numpy. The main thread owns the command socket and runs
user code (so SIGINT reaches that code as KeyboardInterrupt); a daemon thread owns a
second socket and answers heartbeats while user code runs.
"""
