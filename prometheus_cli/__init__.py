"""The `prometheus` command line: developer lifecycle and the local IC."""
