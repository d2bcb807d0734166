"""Pure decisions: per-message rules, consent, content checks, windows, stages 1 and 2, the
engine and the offline runner. No Faust, Kafka or Prometheus imports (make lint enforces it)."""
