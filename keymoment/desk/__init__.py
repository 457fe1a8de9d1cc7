"""The operator's desk: what the commands `compare`, `explain` and `report` compute.

Pure functions over decision-log records and events (plain dicts, as the
JSONL files hold them), so the CLI, the HTML pages and the console's web
page show the same thing. Reading files lives in `records`; drawing in
`html` and `svg`.
"""
