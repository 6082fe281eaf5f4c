"""Finance reports: one data model (data.py) and one writer per format."""
