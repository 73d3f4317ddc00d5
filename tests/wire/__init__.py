"""Tests of multiengine.wire: framing and signatures, serialization, large values in pieces,
connection files, CurveZMQ."""
