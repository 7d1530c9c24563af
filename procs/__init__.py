"""Supervised processes: each module is one supervisord program, run as `python -m procs.<name>`."""
