"""facegate: one face-verification API in front of several vendors and a built-in engine."""

__version__ = "0.1.0"
