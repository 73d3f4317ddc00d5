"""Tests of load-balanced tasks: the TaskClient, map, retries, priorities, time limits, abort,
depend, engines lost under tasks."""
