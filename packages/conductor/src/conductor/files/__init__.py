"""What conductor writes and reads back in a logs folder, at the bottom of its layers:
files made anew and read warily where others may write too (safe_io.py), the services'
logs and conductor.log (logs.py), and the secrets kept out of both (masking.py)."""
