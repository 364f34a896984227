from conductor.cli import entry

entry()
