"""The operator console (`keymoment console`): a live page over the decision stream.

    follow.py   streams in (a growing JSONL file, Kafka, Redis Streams)
    tally.py    what the console knows: counts by minute, recent, per customer
    scrape.py   the engine's /metrics and /readyz, every few seconds
    view.py     the panels' data (explain and uplift from keymoment.desk)
    render.py   panels as escaped HTML; page.py the page around them
    app.py      Starlette: credential, CSP, GET only; static/ its own assets
    serve.py    uvicorn in a thread, the credential from the environment
    beside.py   the console next to a flow in one process (`keymoment demo`)

docs/operations.md describes the page, its security and its figures.
"""
