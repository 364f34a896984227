"""What a run owns in its logs folder: the lock (lockfile.py) and the run record
(run_record.py), the run-PID subfolders of a busy folder (runfolders.py), and the
watchdog that cleans up what the record names when conductor dies (watchdog.py)."""
