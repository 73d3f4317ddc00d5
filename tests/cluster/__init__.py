"""Tests of multiengine.cluster: Cluster, the command line, each launcher (with the real
systems of tests/systems), and those systems themselves."""
