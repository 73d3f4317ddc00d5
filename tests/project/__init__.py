"""Checks on the codebase itself (its layers, exports, and docs that must match the code)."""
