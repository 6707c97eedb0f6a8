"""The local runtime: serves the API on a laptop with AWS emulated in-process."""
