"""MoCo machinery shared by contrastive objectives (SEMI §3.3 CCL; COUPLE's and DUAL's queues to
come): `queue.KeyQueue`, a ring-buffer dictionary of keys updated once per step across
replicas, and `momentum`, momentum key encoders (eq. 9)."""
