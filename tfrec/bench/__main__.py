"""`python -m tfrec.bench <name> [--flags]`: dispatches to tfrec.bench.<name>.main."""

import importlib
import sys

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

BENCHES = ("input", "train", "serve")


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
    sys.exit(f"usage: python -m tfrec.bench {{{'|'.join(BENCHES)}}} [--flags]")
  name = sys.argv.pop(1)
  module = importlib.import_module(f"tfrec.bench.{name}")
  from absl import app
  app.run(module.main)


if __name__ == "__main__":
  main()
