"""The wire layer: signed message framing, serialization of values, connection files."""
