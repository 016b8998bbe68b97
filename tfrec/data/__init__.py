"""Data layer: the record contract, TFRecord io with manifests, item feature store, readers,
the synthetic generator and dataset converters. Imports nothing from the layers above."""
