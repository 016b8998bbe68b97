"""Tasks in the tensorflow_recommenders sense: a loss together with its metrics, as a Keras layer
that a model's `compute_losses` calls. The queue and momentum machinery that contrastive tasks
use lives beside this package, in `tfrec.moco`."""
