"""smsmon: a streaming compliance monitor for SMS traffic (Faust on Apache Kafka)."""

__version__ = "0.1.0"
