"""Data: sources, input pipelines and parsing labels."""
