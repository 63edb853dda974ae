"""Small maintenance scripts (python -m pvtseg.tools.<name>)."""
