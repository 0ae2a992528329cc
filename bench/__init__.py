"""Load generator: real server processes, clients in separate processes, results as JSON."""
