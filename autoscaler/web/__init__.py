"""The head's web service: Ray's Jobs REST API, metrics, state listings, behind the token.

  app.py      the aiohttp application and the Jobs API routes
  auth.py     the token check (Bearer header or the login page's session cookie)
  state.py    the GCS's tables as rows (`rayctl list`, /api/state/<kind>)
  metrics.py  /metrics (Prometheus)
  server.py   the process the head's supervisor runs
"""
