"""Reading `[tool.conductor]` (or conductor.toml) and checking it before anything
starts: its typed schema (schema.py), the file read into a Config (loading.py), the
`{...}` templates filled from it (templates.py), and env files (envfile.py)."""
