"""The Faust agents: thin wiring from topics to the pure rules in `smsmon.rules`."""
