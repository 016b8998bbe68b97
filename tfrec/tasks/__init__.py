"""Training objectives that are more than a loss function: queue dictionaries of keys and
momentum key encoders (SEMI §3.3 / MoCo), later DUAL's adversarial and COUPLE's FIFO objectives.
"""
