"""The README opens with the two set-up commands, and CI runs its test command verbatim."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
  with open(os.path.join(ROOT, *parts)) as f:
    return f.read()


def test_readme_opens_with_two_setup_commands_and_ci_runs_the_test_one():
  readme = _read("README.md")
  block = re.search(r"```bash\n(.*?)```", readme, re.S)
  assert block and readme.index("```bash") < 20, "README must open with the commands"
  commands = [l for l in block.group(1).splitlines() if l and not l.startswith("#")]
  assert len(commands) == 2
  main_job, test_cmd = commands
  assert main_job.startswith('python -m pip install -e ".[test]" && ')
  assert "pytest" in test_cmd and test_cmd.startswith('python -m pip install -e ".[test]" && ')
  assert test_cmd in _read(".ci", "run")


def test_no_machine_paths_in_code():
  for top in ("tfrec", "tests", "configs", "tools"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for name in files:
        if name.endswith((".py", ".flags", ".cfg")):
          text = _read(dirpath, name)
          assert not re.search(r"/(work|farm)/", text), os.path.join(dirpath, name)
