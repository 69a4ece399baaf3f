"""The alerts program: watches the bus and POSTs alerts to the configured webhooks."""
