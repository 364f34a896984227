"""Processes: starting a service's in its own group and stopping everything it became
(start_stop.py, through kill.py, the one way conductor stops anything), COMMAND's
(command.py), proof of what is the run's own (ownership.py), reaping (reaper.py,
subreaper.py), signals (signals.py), who listens on a port (listeners.py), and the
operating system underneath: /proc (procfs.py), what differs by platform
(portable.py), psutil imported on first use (lazy_psutil.py)."""
