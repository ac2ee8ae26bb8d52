"""Reading a run directory for people: the run index (index.py) and the views built on it."""
