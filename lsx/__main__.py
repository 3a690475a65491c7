"""`python -m lsx <command>`: the same as the `lsx` console script (lsx.commands)."""
from lsx.commands import entry

if __name__ == "__main__":
  entry()
