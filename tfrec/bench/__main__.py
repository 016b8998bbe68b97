"""`python -m tfrec.bench <name> [--flags]`: dispatches to tfrec.bench.<name>.main."""

import importlib
import sys

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

BENCHES = ("input", "train", "serve", "retrieve")


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
    sys.exit(f"usage: python -m tfrec.bench {{{'|'.join(BENCHES)}}} [--flags]")
  name = sys.argv.pop(1)
  module = importlib.import_module(f"tfrec.bench.{name}")
  from tfrec import cli
  # Bad input ends with one line, no traceback; a bench may define its flags when it runs.
  cli.run(module.main, f"tfrec.bench {name}", getattr(module, "define_flags", None))


if __name__ == "__main__":
  main()
