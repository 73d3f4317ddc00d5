"""Tests of multiengine.controller: registration and ids, queues, pending results, heartbeats
and engine loss, malformed messages."""
