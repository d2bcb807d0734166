"""The compliance console: a server-rendered web app over the alert store."""
