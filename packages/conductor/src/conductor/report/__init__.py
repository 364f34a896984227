"""What a run tells: the console's live progress, failures and closing table, with the
live record of each service (console.py); summary.json, written once per run, for
`run`, `up` and the pytest plugin alike (summary.py); and report.html, drawn from
summary.json's data only (html_page.py)."""
