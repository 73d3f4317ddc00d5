"""Cluster directories, profiles, launching and the command line."""
