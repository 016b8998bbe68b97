"""Reproducing a paper's results tables over seeds: statistics, figures and reports."""
