"""Prometheus: every metric the router exports (``registry``), the stepwise
exposition and the scrape-time collectors."""
