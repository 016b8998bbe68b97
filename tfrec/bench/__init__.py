"""Benchmarks that print figures (never timed tests): `python -m tfrec.bench <name> [flags]`.

  input   read + parse + check + pad + item-feature lookup + batch of ranking examples.
"""
