"""The data contract and its machinery: record kinds (`schema`), TFRecord io with manifests, the
item feature store, the `tf.data` reader and whole-dataset validation. What produces datasets in
this contract (the synthetic world, MovieLens, selections) lives in `tfrec.datasets`. Imports
nothing from the packages above it."""
