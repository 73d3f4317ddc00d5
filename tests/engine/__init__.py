"""Tests of multiengine.engine: execute semantics, properties, interrupts, the ``multiengine
engine`` command."""
