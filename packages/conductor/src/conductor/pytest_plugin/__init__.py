"""conductor's pytest plugin (the `pytest11` entry point is plugin.py): its hooks and
options (plugin.py, hookspecs.py), the work of the process that owns the run
(controller.py), the stack held in a thread for the run (in_thread.py), and the
`conductor_stack` fixture's plain data, for xdist workers too (fixture.py).

Nothing is imported here: pytest loads the plugin in every run of an environment that
has conductor, and it must cost nothing until a stack is asked for."""
